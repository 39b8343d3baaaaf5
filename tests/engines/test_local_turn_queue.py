"""The local model's queue: one turn at a time, a bounded wait, BUSY at once past it. No model needed."""

from __future__ import annotations

import asyncio

import pytest

from app.engines import EngineError, ErrorKind
from app.engines.local.turn_queue import TurnQueue


async def test_a_turn_past_the_queue_is_busy_at_once_and_the_waiting_one_gets_the_next_turn() -> None:
    turns = TurnQueue(size=1)
    await turns.enter()
    waiter = asyncio.create_task(turns.enter())
    await asyncio.sleep(0)
    assert turns.waiting == 1

    with pytest.raises(EngineError) as refused:
        await asyncio.wait_for(turns.enter(), timeout=0.1)  # at once: not after the running turn
    assert refused.value.kind is ErrorKind.BUSY

    turns.leave()
    await asyncio.wait_for(waiter, timeout=1)
    assert turns.waiting == 0
    turns.leave()


async def test_a_reserved_turn_is_taken_over_by_the_same_task_without_queueing_again() -> None:
    turns = TurnQueue(size=0)
    async with turns.reserved():
        async with asyncio.timeout(0.1):  # in this task (wait_for would run it in another)
            await turns.take_turn()  # queueing again would be BUSY: the turn is taken and nobody may wait
        turns.leave()
    await asyncio.wait_for(turns.enter(), timeout=0.1)  # left once: the turn is free again
    turns.leave()


async def test_a_reservation_nobody_took_over_is_passed_on() -> None:
    turns = TurnQueue(size=1)
    async with turns.reserved():
        waiter = asyncio.create_task(turns.take_turn())  # another task: it queues
        await asyncio.sleep(0)
        assert turns.waiting == 1
    await asyncio.wait_for(waiter, timeout=1)
    turns.leave()
