"""The local worker's lines belong to no turn: its reader tasks outlive the turn that happened to start it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys

from app.conversation.log_context import log_handler, turn_logging
from app.engines.local.process import WorkerProcess

# A stand-in child: says nothing until it is told to, then writes one line to stderr and waits for the end of stdin.
CHILD = "import sys; sys.stdin.readline(); print('model loaded', file=sys.stderr, flush=True); sys.stdin.read()"


async def test_a_worker_started_during_a_turn_logs_after_it_without_the_turn_id() -> None:
    out = io.StringIO()
    logger = logging.getLogger("app.engines.local.process")
    handler = log_handler("json", out)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with turn_logging(shard=0):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CHILD,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            worker = WorkerProcess(proc)
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")  # the turn is over: whatever the worker writes now is no turn's
        await proc.stdin.drain()
        async with asyncio.timeout(30):
            while not worker.stderr_tail:
                await asyncio.sleep(0.01)
        await worker.stop()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["message"], line["turn"], line["shard"]) for line in lines] == [
        (f"local worker {worker.pid}: model loaded", None, None)
    ]
