"""Alembic environment: one linear history for SQLite and PostgreSQL, run over an async engine.

Kor'tana runs the migrations itself at start-up by handing its open connection in
`config.attributes["connection"]`; `alembic upgrade head` from the shell builds its own engine from the
`sqlalchemy.url` option or, when that is unset, from Kor'tana's settings (DATABASE_URL, .env).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from app.storage.database import serialise_migrations
from app.storage.models import Base, described_by_models

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    serialise_migrations(connection)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=described_by_models,  # autogenerate must not drop SQLite's full-text index
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    from app.storage.database import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _database_url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from app.config import load_settings

    return load_settings().database_url


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (connection := context.config.attributes.get("connection")) is not None:
    _run(connection)
else:
    asyncio.run(_run_with_own_engine(_database_url()))
