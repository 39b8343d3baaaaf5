"""The Alembic history creates exactly the schema the models describe, and can be walked down and up again."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from app.storage import create_engine, downgrade, migrate
from app.storage.models import Base, described_by_models

REPO_ROOT = Path(__file__).resolve().parents[2]


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def _schema_differences(url: str) -> list:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                # Only SQLite's FTS5 table and its shadow tables are left out: SQLAlchemy cannot describe them.
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"include_name": described_by_models}), Base.metadata
                )
            )
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade_and_models_agree(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        assert {"conversations", "messages"} <= await _tables(database_url)
        await downgrade(engine, "base")
        assert not {"conversations", "messages"} & await _tables(database_url)
        await migrate(engine)
    finally:
        await engine.dispose()
    assert await _schema_differences(database_url) == []


async def _index_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            if engine.dialect.name == "sqlite":  # the inspector skips expression indexes there
                listed = await connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'")
            else:
                listed = await connection.exec_driver_sql(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'messages'"
                )
            return set(listed.scalars().all())
    finally:
        await engine.dispose()


async def test_downgrading_the_turn_key_keeps_the_turn_order_index_and_the_messages(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO conversations (user_id, scope) VALUES (42, 'dm')"))
            await connection.execute(
                text("INSERT INTO messages (conversation_id, role, content, token_count) VALUES (1, 'user', 'hi', 1)")
            )
        await downgrade(engine, "0002")
        assert {"ix_messages_conversation_turn", "ix_messages_conversation_newest"} <= await _index_names(database_url)
        assert "uq_messages_turn_key_role" not in await _index_names(database_url)
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT content FROM messages"))).scalars().all() == ["hi"]
        await migrate(engine)
        assert "uq_messages_turn_key_role" in await _index_names(database_url)
    finally:
        await engine.dispose()


async def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'pragmas.db'}"
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            journal = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
            foreign_keys = (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar()
            busy = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    finally:
        await engine.dispose()
    assert (journal, foreign_keys) == ("wal", 1)
    assert busy >= 1000


def test_alembic_upgrade_head_from_the_repository_root(tmp_path) -> None:
    database = tmp_path / "cli.db"
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{database}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO_ROOT,
        env={**env, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"conversations", "messages", "alembic_version"} <= tables


INSERT_MESSAGE = text(
    "INSERT INTO messages (conversation_id, role, content, token_count) VALUES (1, 'user', :content, 1)"
)


async def test_message_ids_are_never_reused_and_revision_0010_keeps_the_rows_and_their_search(database_url) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine, "0009")
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO conversations (user_id, scope) VALUES (42, 'dm')"))
            for content in ("my cat is called Miso", "what a lovely name"):
                await connection.execute(INSERT_MESSAGE, {"content": content})
        await migrate(engine)
        async with engine.begin() as connection:
            rows = (await connection.execute(text("SELECT id, content FROM messages ORDER BY id"))).all()
            assert [tuple(row) for row in rows] == [(1, "my cat is called Miso"), (2, "what a lovely name")]
            await connection.execute(text("DELETE FROM messages WHERE id = 2"))  # the newest, as a /reset erases it
            await connection.execute(INSERT_MESSAGE, {"content": "a dog"})
            newest = (await connection.execute(text("SELECT max(id) FROM messages"))).scalar()
            if engine.dialect.name == "sqlite":  # the search triggers came back with the table
                found = await connection.execute(
                    text("SELECT rowid FROM messages_search WHERE messages_search MATCH :q ORDER BY rowid"),
                    {"q": "content : (miso OR dog OR lovely)"},
                )
                assert found.scalars().all() == [1, 3]
        assert newest == 3, "the erased message's id was given to a new one"
        assert {"ix_messages_conversation_turn", "ix_messages_turn", "uq_messages_turn_key_role"} <= await _index_names(
            database_url
        )
    finally:
        await engine.dispose()
    assert await _schema_differences(database_url) == []
