"""Programs that tests run in child processes, one module per job, each started as
`python -m tests.workers.<job> ARGS...` from the repository's root.

Workers that race each other use one starting line: each child connects, prints "ready" and waits for a line
on stdin; the test starts them all, then writes "go" to every one, so the race starts at the same moment.
`start` (the test's side) and `ready_then_wait_for_go` (the worker's side) are the two ends of it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GO = b"go\n"


async def start(job: str, *args: str, ready_within_s: float) -> asyncio.subprocess.Process:
    """Start `tests.workers.<job>` and wait until it is ready; its stdin, stdout and stderr are pipes."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"tests.workers.{job}", *args,
        cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), ready_within_s)
    if line.strip() != b"ready":
        _, stderr = await process.communicate()
        raise AssertionError(f"worker {job} {' '.join(args)} did not start: {line!r} {stderr.decode()[-2000:]}")
    return process


async def ready_then_wait_for_go() -> None:
    """The worker's side: say "ready", then block until the test writes its line."""
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
