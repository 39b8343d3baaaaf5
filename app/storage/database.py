"""Opening the database: the async engine, SQLite's pragmas, and the migrations run at start-up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
DEFAULT_TIMEOUT_S = 10.0
SQLITE_BUSY_TIMEOUT_OPTION = "kortana_sqlite_busy_timeout_s"
# Any fixed 64-bit number: every Kor'tana process sharing a PostgreSQL takes this lock to migrate it.
MIGRATION_LOCK_KEY = 0x6B6F7274616E61  # "kortana"


def create_engine(url: str, *, pool_size: int = 10, timeout_s: float = DEFAULT_TIMEOUT_S) -> AsyncEngine:
    """An async engine. `timeout_s` (DATABASE_TIMEOUT_SECONDS) bounds every wait for the database: PostgreSQL's
    connect, statement and pool waits; SQLite's busy timeout, the wait for another connection's write lock,
    on every connection, the history store's writer included (`sqlite_busy_timeout_s`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            hide_parameters=True,
            connect_args={"timeout": timeout_s},
            execution_options={SQLITE_BUSY_TIMEOUT_OPTION: timeout_s},
        )
        event.listen(engine.sync_engine, "connect", sqlite_pragmas(timeout_s))
        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        hide_parameters=True,  # a failed statement's error must not carry message text into the logs
        pool_timeout=timeout_s,
        # No pre-ping (a round trip per checkout): HistoryStore retries a lost connection once, and a
        # disconnect invalidates the whole pool, so the retry gets a fresh connection.
        connect_args={"timeout": timeout_s, "command_timeout": timeout_s},
    )


def sqlite_busy_timeout_s(engine: AsyncEngine) -> float:
    """The busy timeout `create_engine` gave the engine's SQLite connections."""
    return float(engine.get_execution_options().get(SQLITE_BUSY_TIMEOUT_OPTION, DEFAULT_TIMEOUT_S))


WAL_PAGES_PER_CHECKPOINT = 4000


def sqlite_pragmas(busy_timeout_s: float) -> Callable[..., None]:
    """What every SQLite connection gets on connect: WAL, foreign keys, and the busy timeout."""

    def prepare(dbapi_connection, _record=None) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        # First: switching to WAL may wait for another connection's lock too.
        cursor.execute(f"PRAGMA busy_timeout={max(1, round(busy_timeout_s * 1000))}")
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL under WAL: a committed turn survives a crash of the process; only a power cut may lose the last ones.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # A checkpoint runs inside the commit that crosses this many WAL pages and stalls that turn (its fsyncs)
        # for 3-4 ms; at SQLite's default of 1,000 that was about one turn in a hundred. 4,000 pages (16 MB of
        # WAL at most between checkpoints) makes it one in several hundred.
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES_PER_CHECKPOINT}")
        cursor.close()

    return prepare


def describe(url: str) -> str:
    """Where the data lives, fit to print: a SQLite file's absolute path, or the URL without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return str(Path(parsed.database).expanduser().resolve())
    return parsed.render_as_string(hide_password=True)


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision` over the engine's own connection (safe to call on every start, and from
    several processes at once: see `serialise_migrations`)."""
    await _run_alembic(engine, command.upgrade, revision)


def serialise_migrations(connection: Connection) -> None:
    """Hold PostgreSQL's migration lock until the connection's transaction ends.

    Alembic itself takes no lock: two processes upgrading an empty database at once both create the tables,
    and one fails (a duplicate in pg_type). With the lock, the second waits, then finds the schema at head.
    SQLite needs none: one process owns the file.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    await _run_alembic(engine, command.downgrade, revision)


async def _run_alembic(engine: AsyncEngine, alembic_command: Callable[[Config, str], None], revision: str) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        alembic_command(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)
