"""`python -m tests.workers.server_persona URL GUILD CHANNEL CACHE_S EXPECTED`: another process of the deployment,
which keeps asking for the persona in effect in a channel (through its own ServerSettings, with its own cache)
until it is EXPECTED, then prints how many seconds that took (tests/conversation/test_server_settings.py).

It reads the persona once before "ready", so its cache holds the old one when the test changes it.
"""

from __future__ import annotations

import asyncio
import sys
import time

from app.conversation.server_settings import Defaults, ServerSettings
from app.storage import ServerSettingsStore, create_engine
from tests.workers import ready_then_wait_for_go

GIVE_UP_AFTER_S = 30.0


async def main(url: str, guild_id: int, channel_id: int, cache_s: float, expected: str) -> None:
    engine = create_engine(url)
    try:
        settings = ServerSettings(ServerSettingsStore(engine), Defaults("the environment's persona"), cache_s=cache_s)
        await settings.effective(guild_id, channel_id)
        await ready_then_wait_for_go()
        began = time.monotonic()
        while (await settings.effective(guild_id, channel_id)).persona.value != expected:
            if time.monotonic() - began > GIVE_UP_AFTER_S:
                sys.exit("the change never arrived")
            await asyncio.sleep(0.05)
        print(f"{time.monotonic() - began:.3f}", flush=True)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    url, guild, channel, cache, expected = sys.argv[1:]
    asyncio.run(main(url, int(guild), int(channel), float(cache), expected))
