"""Processes started together on one empty PostgreSQL all migrate it: the upgrade is serialised in the database.

Each process is `python -m tests.storage.test_concurrent_migrations URL`: it connects, says "ready", waits for
"go" on stdin (so all of them start the upgrade at the same moment), then runs the start-up migration.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from app.storage import create_engine, migrate

REPO = Path(__file__).resolve().parents[2]
PROCESSES = 10
postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def _worker(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:  # connected before the race: only the upgrade competes
            await connection.execute(text("SELECT 1"))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await migrate(engine)
    finally:
        await engine.dispose()


async def _start(url: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.storage.test_concurrent_migrations", url,
        cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    assert line.strip() == b"ready", (await process.communicate())[1].decode()[-2000:]
    return process


async def _finish(process: asyncio.subprocess.Process) -> tuple[int, str]:
    _, stderr = await asyncio.wait_for(process.communicate(b"go\n"), 120)
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


if __name__ == "__main__":
    asyncio.run(_worker(sys.argv[1]))
