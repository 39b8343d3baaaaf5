"""What a server admin and its members do in the settings tests, and what they see (the tests' own kit, beside
tests.helpers' World)."""

from __future__ import annotations

import asyncio

from tests.fakes.openai_server import RecordedRequest
from tests.helpers import World, interaction_text


async def command(world: World, path: str, options: dict | None = None, **kwargs) -> str:
    """Run a slash command (a path: "settings channel open") and return what its caller sees."""
    interaction = await world.fake.slash_command(path, options, **kwargs)
    return await interaction_text(world, interaction)


async def persona_form(world: World, options: dict | None = None, **kwargs):
    """/settings persona's form as Discord shows it (the interaction it answers)."""
    opened = await world.fake.slash_command("settings persona", options or {}, **kwargs)
    await world.fake.wait_for(lambda: opened.modal, what="the persona form")
    return opened


async def set_persona(world: World, text: str, **kwargs) -> str:
    """Open /settings persona's form, write `text` and submit it; return the answer."""
    opened = await persona_form(world, **kwargs)
    submitted = await world.fake.submit_modal(opened, {"persona": text})
    return await interaction_text(world, submitted)


def system_prompt(request: RecordedRequest) -> str:
    return request.messages[0]["content"]


async def unanswered(world: World, message: dict, requests_before: int, wait_s: float = 0.5) -> None:
    """Nothing answers `message`: no bot message after it in its channel, and no model call."""
    await asyncio.sleep(wait_s)
    channel = int(message["channel_id"])
    later = [m.content for m in world.fake.bot_messages(channel) if int(m.id) > int(message["id"])]
    assert later == [], f"answered: {later}"
    assert len(world.brain.requests) == requests_before, "a model was called"
