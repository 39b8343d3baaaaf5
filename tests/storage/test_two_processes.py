"""Two OS processes answering one conversation (HISTORY_SCOPE=global spans shards) on one PostgreSQL.

Each process is tests/workers/conversation_turns.py: its own ConversationService with an instant engine; both
start their turns together and print every window they sent to the engine.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from sqlalchemy import select

from app.storage import create_engine, messages
from tests import workers
from tests.helpers import history_store
from tests.workers.conversation_turns import KEY

TURNS = 40


async def _start(url: str, name: str) -> asyncio.subprocess.Process:
    return await workers.start("conversation_turns", url, name, str(TURNS), ready_within_s=30)


async def _windows(process: asyncio.subprocess.Process) -> list[list[dict]]:
    stdout, stderr = await asyncio.wait_for(process.communicate(workers.GO), 60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    return json.loads(stdout.decode().strip().splitlines()[-1])


def _check_window(window: list[dict]) -> None:
    """System prompt, then whole turns: never an answer first, every answer right after its own question."""
    history = window[1:-1]
    assert window[0]["role"] == "system" and window[-1]["role"] == "user"
    assert not history or history[0]["role"] == "user", f"window starts with an orphaned answer: {history[0]}"
    for before, message in itertools.pairwise(history):
        if message["role"] == "assistant":
            assert before["role"] == "user" and message["content"] == f"reply to: {before['content']}", window


async def test_two_processes_writing_one_conversation_lose_nothing_and_keep_turn_order(migrated_url: str) -> None:
    if migrated_url.startswith("sqlite"):
        pytest.skip("SQLite is one process per file")
    first, second = await _start(migrated_url, "alpha"), await _start(migrated_url, "beta")
    windows = dict(zip(("alpha", "beta"), await asyncio.gather(_windows(first), _windows(second)), strict=True))

    database = create_engine(migrated_url)
    store = history_store(database)
    try:
        stored = await store.all_messages(await store.conversation_id(KEY))
        async with database.connect() as connection:
            by_arrival = (await connection.execute(select(messages.c.id, messages.c.turn_id).order_by("id"))).all()
    finally:
        await store.close()  # disposes the engine too
    overlapped = [row for previous, row in itertools.pairwise(by_arrival) if row.turn_id not in (None, previous.id)]
    assert overlapped, "the processes ran one after the other: the race was not exercised"
    questions = [m.content for m in stored if m.role == "user"]
    assert sorted(questions) == sorted(f"{name} question {i}" for name in windows for i in range(TURNS))
    assert len(stored) == 4 * TURNS
    for question, answer in zip(stored[::2], stored[1::2], strict=True):
        assert (question.role, answer.role) == ("user", "assistant")
        assert answer.content == f"reply to: {question.content}"

    for name, sent in windows.items():
        assert [w[-1]["content"] for w in sent] == [f"{name} question {i}" for i in range(TURNS)]
        for window in sent:
            _check_window(window)
    other_seen = [w for w in windows["alpha"] if any("beta" in m["content"] for m in w[1:-1])]
    assert other_seen, "each process reads the other's turns: one history"
