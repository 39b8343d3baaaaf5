"""Two OS processes answering one conversation (HISTORY_SCOPE=global spans shards) on one PostgreSQL.

Each process is `python -m tests.storage.test_two_processes URL NAME TURNS`: it opens its own
ConversationService with an instant engine, says "ready", waits for "go" on stdin (so both start together),
runs its turns one after another, and prints every window it sent to the engine as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import aclosing
from pathlib import Path

import pytest
from sqlalchemy import select

from app.bench.instant_engine import InstantEngine
from app.conversation.service import ConversationService
from app.conversation.tokens import EstimatedTokens
from app.engines.chain import EngineChain, Tier
from app.engines.echo import EchoEngine
from app.storage.database import create_engine
from app.storage.history import ConversationKey, open_history_store
from app.storage.models import messages

KEY = ConversationKey(user_id=4242, scope="global")
TURNS = 40
BUDGET = 250  # small, so windows are cut and the oldest turns fall out mid-test
REPO = Path(__file__).resolve().parents[2]


async def _worker(url: str, name: str, turns: int) -> None:
    engine = InstantEngine(delay_s=0.01)  # a model's thinking time: the other process's turns land meanwhile
    service = ConversationService(
        open_history_store(create_engine(url), window_budget=BUDGET),
        EngineChain([Tier(engine, 5.0)], EchoEngine(), max_tokens=32),
        EstimatedTokens(),
        system_prompt="You are a test companion.",
        history_token_budget=BUDGET,
    )
    try:
        await service.history(KEY)  # connect and create the conversation before the race starts
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for i in range(turns):
            async with aclosing(service.respond(KEY, name, f"{name} question {i}")) as events:
                async for _ in events:
                    pass
    finally:
        await service.close()
    print(json.dumps(engine.requests), flush=True)


async def _start(url: str, name: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.storage.test_two_processes", url, name, str(TURNS),
        cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if line.strip() != b"ready":
        _, stderr = await process.communicate()
        pytest.fail(f"worker {name} did not start: {line!r} {stderr.decode()[-2000:]}")
    return process


async def _windows(process: asyncio.subprocess.Process) -> list[list[dict]]:
    stdout, stderr = await asyncio.wait_for(process.communicate(b"go\n"), 60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    return json.loads(stdout.decode().strip().splitlines()[-1])


def _check_window(window: list[dict]) -> None:
    """System prompt, then whole turns: never an answer first, every answer right after its own question."""
    history = window[1:-1]
    assert window[0]["role"] == "system" and window[-1]["role"] == "user"
    assert not history or history[0]["role"] == "user", f"window starts with an orphaned answer: {history[0]}"
    for before, message in zip(history, history[1:]):
        if message["role"] == "assistant":
            assert before["role"] == "user" and message["content"] == f"reply to: {before['content']}", window


async def test_two_processes_writing_one_conversation_lose_nothing_and_keep_turn_order(migrated_url: str) -> None:
    if migrated_url.startswith("sqlite"):
        pytest.skip("SQLite is one process per file")
    first, second = await _start(migrated_url, "alpha"), await _start(migrated_url, "beta")
    windows = dict(zip(("alpha", "beta"), await asyncio.gather(_windows(first), _windows(second))))

    database = create_engine(migrated_url)
    store = open_history_store(database)
    try:
        stored = await store.all_messages(await store.conversation_id(KEY))
        async with database.connect() as connection:
            by_arrival = (await connection.execute(select(messages.c.id, messages.c.turn_id).order_by("id"))).all()
    finally:
        await store.close()  # disposes the engine too
    overlapped = [row for row, previous in zip(by_arrival[1:], by_arrival) if row.turn_id not in (None, previous.id)]
    assert overlapped, "the processes ran one after the other: the race was not exercised"
    questions = [m.content for m in stored if m.role == "user"]
    assert sorted(questions) == sorted(f"{name} question {i}" for name in windows for i in range(TURNS))
    assert len(stored) == 4 * TURNS
    for question, answer in zip(stored[::2], stored[1::2]):
        assert (question.role, answer.role) == ("user", "assistant")
        assert answer.content == f"reply to: {question.content}"

    for name, sent in windows.items():
        assert [w[-1]["content"] for w in sent] == [f"{name} question {i}" for i in range(TURNS)]
        for window in sent:
            _check_window(window)
    other_seen = [w for w in windows["alpha"] if any("beta" in m["content"] for m in w[1:-1])]
    assert other_seen, "each process reads the other's turns: one history"


if __name__ == "__main__":
    asyncio.run(_worker(sys.argv[1], sys.argv[2], int(sys.argv[3])))
