"""Running a discord.py client against the fake: ``speed_up``, ``BotRunner`` and ``start_bot``/``running``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from tests.fakes.discord.state import DiscordState


def speed_up(client: Any, *, guild_ready_timeout: float = 0.05) -> None:
    """Make a discord.py client become ready quickly against the fake.

    discord.py waits ``guild_ready_timeout`` (2 s) after the last GUILD_CREATE before on_ready, and an
    AutoShardedClient sleeps 5 s before each non-first shard's IDENTIFY; neither can be shortened from the
    server side.  Call before the client starts (``FakeDiscord.start_bot(fast=True)`` does).
    """

    client._connection.guild_ready_timeout = guild_ready_timeout

    async def before_identify_hook(shard_id: int | None, *, initial: bool = False) -> None:
        return None

    client.before_identify_hook = before_identify_hook


class BotRunner:
    """A client running ``client.start(token)`` as a background task (see ``FakeDiscord.start_bot``)."""

    def __init__(self, client: Any, task: asyncio.Task, ready_after: float) -> None:
        self.client = client
        self.task = task
        self.ready_after = ready_after  # seconds from start to on_ready

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - the fake's own API: tests pass timeout=
        """Close the client and wait for its task; re-raise what the task raised, if anything."""
        if not self.client.is_closed():
            await self.client.close()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
            raise



class BotRunning(DiscordState):
    async def start_bot(
        self,
        client: Any,
        token: str | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the fake's own API: tests pass timeout=
        fast: bool = True,
    ) -> BotRunner:
        """Run ``client.start(token)`` in the background and wait until it is ready.

        If start() fails first (LoginFailure, PrivilegedIntentsRequired, ConnectionClosed...), that
        exception is raised here.  Stop with ``await runner.stop()``.
        """
        if fast:
            speed_up(client)
        started = time.monotonic()
        task = asyncio.create_task(client.start(token or self.token or "fake-token"))
        while not client.is_ready():
            if task.done():
                if not client.is_closed():  # discord.py leaves its HTTP session open on some failures
                    await client.close()
                task.result()  # raises the start-up failure
                raise RuntimeError("client.start() returned before the client became ready")
            if time.monotonic() - started > timeout:
                runner = BotRunner(client, task, float("nan"))
                with contextlib.suppress(Exception):
                    await runner.stop()
                raise AssertionError(f"client not ready after {timeout}s; REST calls: {self._summary()}")
            await asyncio.sleep(0.005)
        return BotRunner(client, task, time.monotonic() - started)

    @contextlib.asynccontextmanager
    async def running(
        self,
        client: Any,
        token: str | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the fake's own API: tests pass timeout=
        fast: bool = True,
    ) -> AsyncIterator[BotRunner]:
        runner = await self.start_bot(client, token, timeout=timeout, fast=fast)
        try:
            yield runner
        finally:
            await runner.stop()

