""""Kor'tana is typing…" in the background: it never delays a turn, and a refused or rate-limited typing call
is no reason to fail one."""

from __future__ import annotations

import asyncio
import logging

import discord

log = logging.getLogger(__name__)

REFRESH_S = 8.0  # Discord shows the indicator for about 10 s after each call


def start_typing(channel: discord.abc.Messageable, lifetime_s: float) -> asyncio.Task[None]:
    """Show typing in `channel` until the task is cancelled, for `lifetime_s` at most."""
    return asyncio.create_task(_keep_typing(channel, lifetime_s), name="kortana-typing")


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
