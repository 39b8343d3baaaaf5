"""A user's messages leave the checks before their turns (settings, usage) in the order they arrived, however long
each check takes; other users never wait for them."""

from __future__ import annotations

import asyncio

from app.bot.arrival_order import ArrivalOrder


async def checked(order: ArrivalOrder, user_id: int, name: str, check_s: float, passed: list[str]) -> None:
    async with order.enter(user_id):  # entered synchronously at the call, as a message's handler does
        await asyncio.sleep(check_s)  # a settings read that may take long
        passed.append(name)


async def test_a_slow_check_is_not_overtaken_by_a_later_message_of_the_same_user() -> None:
    order = ArrivalOrder()
    passed: list[str] = []
    tasks = [
        asyncio.create_task(checked(order, 1, "first", 0.2, passed)),
        asyncio.create_task(checked(order, 1, "second", 0.0, passed)),
        asyncio.create_task(checked(order, 1, "third", 0.05, passed)),
    ]
    await asyncio.gather(*tasks)
    assert passed == ["first", "second", "third"]
    assert len(order) == 0, "an idle user costs no memory"


async def test_other_users_do_not_wait() -> None:
    order = ArrivalOrder()
    passed: list[str] = []
    slow = asyncio.create_task(checked(order, 1, "alice", 0.3, passed))
    fast = asyncio.create_task(checked(order, 2, "bob", 0.0, passed))
    await asyncio.gather(slow, fast)
    assert passed == ["bob", "alice"]


async def test_a_message_cancelled_while_waiting_keeps_the_order_behind_it() -> None:
    order = ArrivalOrder()
    passed: list[str] = []
    first = asyncio.create_task(checked(order, 1, "first", 0.2, passed))
    cancelled = asyncio.create_task(checked(order, 1, "cancelled", 0.0, passed))
    last = asyncio.create_task(checked(order, 1, "last", 0.0, passed))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    await asyncio.gather(first, last, return_exceptions=True)
    assert passed == ["first", "last"]
    assert cancelled.cancelled()
    assert len(order) == 0
