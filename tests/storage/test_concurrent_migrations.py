"""Processes started together on one empty PostgreSQL all migrate it: the upgrade is serialised in the database.

Each process is tests/workers/migrate.py: it connects, then all of them start the upgrade at the same moment.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from app.storage import create_engine
from tests import workers

PROCESSES = 10
postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def _start(url: str) -> asyncio.subprocess.Process:
    return await workers.start("migrate", url, ready_within_s=60)


async def _finish(process: asyncio.subprocess.Process) -> tuple[int, str]:
    _, stderr = await asyncio.wait_for(process.communicate(workers.GO), 120)
    return process.returncode or 0, stderr.decode()


@postgres_only
async def test_processes_upgrading_an_empty_database_at_once_all_succeed(database_url: str) -> None:
    processes = await asyncio.gather(*(_start(database_url) for _ in range(PROCESSES)))
    results = await asyncio.gather(*(_finish(process) for process in processes))
    failures = [stderr[-1500:] for code, stderr in results if code != 0]
    assert not failures, f"{len(failures)} of {PROCESSES} failed; first:\n{failures[0]}"
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            versions = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    finally:
        await engine.dispose()
    assert len(versions) == 1
