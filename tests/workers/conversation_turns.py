"""`python -m tests.workers.conversation_turns URL NAME TURNS`: one process of the two-process test
(tests/storage/test_two_processes.py).

It opens its own ConversationService with an instant engine on the database at URL, creates the shared
conversation, waits at the starting line, runs TURNS turns one after another ("NAME question i"), and prints
every window it sent to the engine as one line of JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import aclosing

from app.bench.instant_engine import InstantEngine
from app.storage import ConversationKey
from tests.helpers import conversation_service, history_store
from tests.workers import ready_then_wait_for_go

KEY = ConversationKey(user_id=4242, scope="global")
BUDGET = 250  # small, so windows are cut and the oldest turns fall out mid-test


async def main(url: str, name: str, turns: int) -> None:
    engine = InstantEngine(delay_s=0.01)  # a model's thinking time: the other process's turns land meanwhile
    service = conversation_service(
        history_store(url, window_budget=BUDGET),
        [engine],
        budget=BUDGET,
        max_tokens=32,
        system_prompt="You are a test companion.",
    )
    try:
        await service.export(KEY)  # connect and create the conversation before the race starts
        await ready_then_wait_for_go()
        for i in range(turns):
            async with aclosing(service.respond(KEY, name, f"{name} question {i}")) as events:
                async for _ in events:
                    pass
    finally:
        await service.close()
    print(json.dumps(engine.requests), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
