"""What answers cost, charged by the history store with each answer and read back per member, day and server."""

from __future__ import annotations

from datetime import date

import pytest

from app.storage import ConversationKey, StoredMessage, UsageCharge, UsageStore, UsageTotal
from tests.helpers import history_store

TODAY = date(2026, 12, 1)
YESTERDAY = date(2026, 11, 30)


@pytest.fixture
async def store(migrated_url: str):  # type: ignore[no-untyped-def]
    opened = history_store(migrated_url)
    yield opened
    await opened.close()


async def _answer(store, user_id: int, charge: UsageCharge | None, engine: str = "brain") -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(ConversationKey(user_id, "guild:7"))
    turn = (await store.start_turn(conversation, StoredMessage("user", "question", 3), 1000)).turn_id
    await store.finish_turn(conversation, StoredMessage("assistant", "answer", 3, engine), turn, charge=charge)


async def test_answers_add_up_per_member_server_day_and_engine(store) -> None:  # type: ignore[no-untyped-def]
    usage = UsageStore(store.database)
    await _answer(store, 1, UsageCharge(TODAY, 7, 1, 100))
    await _answer(store, 1, UsageCharge(TODAY, 7, 1, 50), engine="huggingface")
    await _answer(store, 1, UsageCharge(TODAY, 8, 1, 25))  # another server
    await _answer(store, 2, UsageCharge(TODAY, 7, 2, 10))  # another member
    await _answer(store, 1, UsageCharge(YESTERDAY, 7, 1, 1000))
    await _answer(store, 1, None)  # an answer stored without a charge (a tool) costs nothing

    assert await usage.used(TODAY, 7, 1) == 150
    assert await usage.used(TODAY, 8, 1) == 25
    assert await usage.used(TODAY, 9, 1) == 0
    assert await usage.day_total(TODAY) == 185
    assert await usage.totals(TODAY) == [
        UsageTotal(TODAY, 7, "brain", 110, 2),
        UsageTotal(TODAY, 7, "huggingface", 50, 1),
        UsageTotal(TODAY, 8, "brain", 25, 1),
    ]
    assert (await usage.totals(YESTERDAY))[-1] == UsageTotal(YESTERDAY, 7, "brain", 1000, 1)


async def test_an_answer_whose_question_was_erased_is_not_charged(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(ConversationKey(1, "dm"))
    turn = (await store.start_turn(conversation, StoredMessage("user", "question", 3), 1000)).turn_id
    await store.reset(conversation)
    charge = UsageCharge(TODAY, 0, 1, 100)
    await store.finish_turn(conversation, StoredMessage("assistant", "answer", 3, "brain"), turn, charge=charge)
    assert await UsageStore(store.database).used(TODAY, 0, 1) == 0
