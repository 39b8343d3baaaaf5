"""One bot process of the PostgreSQL benchmark's multi-process runs (started by `app.bench.postgres`).

    python -m app.bench.postgres_worker URL FIRST_USER TURNS CONVERSATIONS DELAY_MS

It opens its own service and conversations, says "ready", waits for "go" on stdin so that all processes start
together, then prints (turns, seconds, CPU seconds) as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from app.bench.shared import throughput


async def work(url: str, first_user: int, turns_per_conversation: int, conversations: int, delay_ms: int) -> None:
    async def ready_then_wait_for_go() -> None:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    result = await throughput(
        url, first_user, turns_per_conversation, ready_then_wait_for_go, conversations, delay_ms / 1000
    )
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m app.bench.postgres_worker", description=__doc__.splitlines()[0])
    parser.add_argument("url")
    for number in ("first_user", "turns", "conversations", "delay_ms"):
        parser.add_argument(number, type=int)
    args = parser.parse_args()
    asyncio.run(work(args.url, args.first_user, args.turns, args.conversations, args.delay_ms))


if __name__ == "__main__":
    main()
