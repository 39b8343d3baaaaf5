""""Kor'tana is typing…" in the background: it never delays a turn, and a refused or rate-limited typing call
is no reason to fail one.

discord.py's own `channel.typing()` awaits its first call before the block runs, so a slow or rate-limited
typing call would hold the answer: this one only starts the calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import discord

log = logging.getLogger(__name__)

REFRESH_S = 8.0  # Discord shows the indicator for about 10 s after each call


@asynccontextmanager
async def typing_in_background(channel: discord.abc.Messageable, lifetime_s: float) -> AsyncIterator[None]:
    """Show typing in `channel` while the block runs, for `lifetime_s` at most; stopped (and awaited) on exit."""
    task = asyncio.create_task(_keep_typing(channel, lifetime_s), name="kortana-typing")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait([task])  # ends at its next await; never raises, so the block's outcome stands


async def _keep_typing(channel: discord.abc.Messageable, lifetime_s: float) -> None:
    try:
        async with asyncio.timeout(lifetime_s):
            while True:
                await channel.typing()
                await asyncio.sleep(REFRESH_S)
    except TimeoutError:
        pass
    except Exception as error:  # noqa: BLE001 - cosmetic: a closed session or a 403 must not leave a traceback
        log.debug("Typing indicator stopped: %s", error)
