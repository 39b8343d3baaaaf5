"""`python -m tests.workers.migrate URL`: one of the processes that migrate one empty database at once
(tests/storage/test_concurrent_migrations.py).

It connects first, so that only the upgrade competes, waits at the starting line, then runs the start-up
migration.
"""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import text

from app.storage import create_engine, migrate
from tests.workers import ready_then_wait_for_go


async def main(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        await ready_then_wait_for_go()
        await migrate(engine)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
