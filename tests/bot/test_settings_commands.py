"""/settings on Discord, end to end: a server's admins set the persona, open channels, rules, limits and model;
the next turn follows them; members without Manage Server and bad input are refused with one sentence and
nothing stored changes; settings outlive a restart, stay in their server, and go with a deleted channel."""

from __future__ import annotations

import asyncio

import pytest

from app.bot.sentences import (
    CHANNEL_ELSEWHERE,
    CHANNEL_GONE,
    NEED_MANAGE_SERVER,
    NO_MODEL_CHOICE,
    ONE_TARGET,
    ROLE_ELSEWHERE,
    model_saved,
)
from app.conversation.setup import open_service
from app.storage import PlaceSettings
from tests.bot.settings_kit import command, persona_form, set_persona, system_prompt, unanswered
from tests.fakes.discord import PERM_MANAGE_GUILD
from tests.helpers import World, answer_to, interaction_text, mention

HOOK = "You are Captain Hook, a pirate who speaks in nautical terms."
LIBRARIAN = "You are a quiet librarian who answers in whispers."


async def test_an_admins_persona_is_what_the_next_message_is_answered_with_channel_over_server(world: World) -> None:
    fake = world.fake
    library = fake.add_channel(fake.guild.id, "library")
    await world.start()
    assert "Done" in await set_persona(world, HOOK)
    await answer_to(world, await mention(world, "ahoy?"))
    assert HOOK in system_prompt(world.brain.requests[-1])

    assert "Done" in await set_persona(world, LIBRARIAN, options={"channel": library})
    await answer_to(world, await fake.user_message(library, f"<@{fake.bot_id}> a book?"))
    assert LIBRARIAN in system_prompt(world.brain.requests[-1]) and HOOK not in system_prompt(world.brain.requests[-1])
    reading_room = fake.add_thread(library, "reading room")
    await answer_to(world, await fake.user_message(reading_room, f"<@{fake.bot_id}> in the thread?"))
    assert LIBRARIAN in system_prompt(world.brain.requests[-1]), "a thread speaks as its parent channel"
    await answer_to(world, await mention(world, "and here?"))
    assert HOOK in system_prompt(world.brain.requests[-1]), "other channels keep the server's persona"

    assert "Done" in await command(world, "settings persona", {"channel": library, "reset": True})
    await answer_to(world, await fake.user_message(library, f"<@{fake.bot_id}> again?"))
    assert HOOK in system_prompt(world.brain.requests[-1]), "a channel's reset falls back to the server's persona"
    assert "Done" in await command(world, "settings persona", {"reset": True})
    await answer_to(world, await mention(world, "back to normal?"))
    assert system_prompt(world.brain.requests[-1]).startswith(world.settings().system_prompt)


async def test_the_form_shows_the_persona_in_effect_capped_at_persona_max_chars(world: World) -> None:
    await world.start(persona_max_chars=300)
    text_input = (await persona_form(world)).modal.text_inputs["persona"]
    assert text_input["max_length"] == 300
    assert text_input["value"] == world.settings().system_prompt[:300]
    await set_persona(world, HOOK)
    library = world.fake.add_channel(world.fake.guild.id, "library")
    assert (await persona_form(world, {"channel": library})).modal.text_inputs["persona"]["value"] == HOOK


async def test_settings_is_declared_for_manage_server_and_only_in_servers(world: World) -> None:
    await world.start()
    declared = next(c for c in world.fake.commands[None] if c["name"] == "settings")
    assert int(declared["default_member_permissions"]) == PERM_MANAGE_GUILD
    assert declared.get("contexts") in ([0], None) and declared.get("dm_permission") in (False, None)
    subcommands = {option["name"] for option in declared["options"]}
    assert subcommands == {"persona", "channel", "allow", "block", "remove-rule", "limits", "model", "show"}


async def test_a_member_without_manage_server_is_refused_and_nothing_changes(world: World) -> None:
    fake = world.fake
    await world.start()
    bob = fake.bob
    for path, options in [
        ("settings persona", {}),
        ("settings channel open", {}),
        ("settings block", {"who": fake.alice}),
        ("settings limits", {"daily_tokens": 1}),
        ("settings show", {}),
    ]:
        interaction = await fake.slash_command(path, options, user=bob)
        assert await interaction_text(world, interaction) == NEED_MANAGE_SERVER, path
        assert interaction.modal is None and interaction.ephemeral
    record = await world.service.server_settings.record(fake.guild.id)
    assert record.server == PlaceSettings() and not record.channels and not record.rules

    managers = fake.add_role(fake.guild.id, "managers", permissions=PERM_MANAGE_GUILD)
    fake.give_role(bob, fake.guild.id, managers)
    assert "Done" in await command(world, "settings channel open", {}, user=bob), "the role gives the right"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("invisible persona", "visible text"),
        ("persona too long for the budget", "no room"),
        ("role of another server", ROLE_ELSEWHERE),
        ("channel of another server", CHANNEL_ELSEWHERE),
        ("deleted channel", CHANNEL_GONE),
        ("model not allowed", "isn't one the operator allows"),
        ("member and channel at once", ONE_TARGET),
    ],
)
async def test_bad_input_gets_one_sentence_and_changes_nothing(world: World, case: str, expected: str) -> None:
    fake = world.fake
    await world.start(allowed_models="brain:small-model", history_token_budget=400, summary_enabled=False)
    other = fake.add_guild("elsewhere")
    before = await command(world, "settings show")
    if case == "invisible persona":
        answer = await set_persona(world, "\u200b\u2060\u200b")
    elif case == "persona too long for the budget":
        answer = await set_persona(world, "A very talkative pirate persona. " * 55)
    elif case == "role of another server":
        answer = await command(world, "settings block", {"who": fake.add_role(other.id, "their role")})
    elif case == "channel of another server":
        answer = await command(world, "settings channel open", {"channel": other.channels["general"]})
    elif case == "deleted channel":
        gone = fake.add_channel(fake.guild.id, "gone")
        fake.delete_channel(gone)
        answer = await command(world, "settings channel open", {"channel": gone})
    elif case == "model not allowed":
        answer = await command(world, "settings model", {"model": "brain:huge-model"})
    else:
        answer = await command(world, "settings allow", {"who": fake.bob, "channel": fake.channel})
    assert expected in answer and answer.count(".") <= 2, answer
    assert await command(world, "settings show") == before
    record = await world.service.server_settings.record(fake.guild.id)
    assert record.server == PlaceSettings() and not record.channels and not record.rules


async def test_remove_rule_goes_by_the_database_not_by_this_processs_copy(world: World) -> None:
    fake = world.fake
    await world.start(settings_cache_seconds=60)
    await command(world, "settings show")  # the server's settings are read, and kept for a minute
    other_process = await open_service(world.settings())
    try:
        await other_process.server_settings.set_rule(fake.guild.id, "user", int(fake.bob["id"]), "block", by=1)
    finally:
        await other_process.close()
    assert "no rule any more" in await command(world, "settings remove-rule", {"who": fake.bob})
    assert "has no rule, so nothing was changed" in await command(world, "settings remove-rule", {"who": fake.bob})
    assert (await world.service.server_settings.record(fake.guild.id)).rules == ()


async def test_without_allowed_models_no_model_can_be_picked(world: World) -> None:
    await world.start()
    assert await command(world, "settings model", {"model": "brain:small-model"}) == NO_MODEL_CHOICE
    assert (await world.service.server_settings.record(world.fake.guild.id)).server == PlaceSettings()


async def test_a_model_the_operator_no_longer_allows_is_not_asked_for_and_can_be_cleared(world: World) -> None:
    fake = world.fake
    await world.start(allowed_models="brain:small-model", brain_model="standard-model")
    await command(world, "settings model", {"model": "brain:small-model"})
    await world.restart(allowed_models="")
    await answer_to(world, await mention(world, "which model now?"))
    assert world.brain.requests[-1].body["model"] == "standard-model"
    assert await command(world, "settings model", {"model": "default"}) == model_saved(None)
    assert (await world.service.server_settings.record(fake.guild.id)).server.model is None


async def test_a_picked_model_is_asked_for_on_its_tier(world: World) -> None:
    await world.start(allowed_models="brain:small-model,brain:other-model", brain_model="standard-model")
    assert "small-model" in await command(world, "settings model", {"model": "brain:small-model"})
    await answer_to(world, await mention(world, "which model?"))
    assert world.brain.requests[-1].body["model"] == "small-model"
    assert "default" in await command(world, "settings model", {"model": "default"})
    await answer_to(world, await mention(world, "and now?"))
    assert world.brain.requests[-1].body["model"] == "standard-model"


async def test_show_says_what_is_in_effect_and_where_each_value_comes_from(world: World) -> None:
    fake = world.fake
    await world.start(user_cooldown_seconds=3)
    await set_persona(world, HOOK)
    await command(world, "settings channel open", {"threads": True})
    await command(world, "settings limits", {"daily_tokens": 5000})
    await command(world, "settings block", {"who": fake.bob})
    shown = await command(world, "settings show")
    lines = {line.split(":")[0].strip("• "): line for line in shown.splitlines()}
    assert "**yes** — *set for this channel*" in lines["Every message answered, no mention needed"]
    assert "**yes** — *set for this channel*" in lines["A thread for each new message"]
    assert "**5,000 tokens** — *server-wide*" in lines["Daily tokens per member"]
    assert "**3 s** between messages — *the operator's default*" in lines["Cooldown"]
    assert f"<@{fake.bob['id']}>" in lines["Blocked"]
    assert "Persona — *server-wide*" in shown and HOOK in shown

    thread = fake.add_thread(fake.channel, "a thread")
    in_thread = await command(world, "settings show", channel_id=thread)
    assert "*from the parent channel*" in in_thread and f"it follows <#{fake.channel}>" in in_thread


async def test_in_a_thread_channel_open_and_close_mean_its_parent_even_one_the_bot_never_cached(world: World) -> None:
    fake = world.fake
    old_thread = fake.add_thread(fake.channel, "from long ago", archived=True)
    await world.start()
    assert f"<#{fake.channel}>" in await command(world, "settings channel open", channel_id=old_thread)
    assert (await world.service.server_settings.record(fake.guild.id)).channels[fake.channel].open
    assert f"<#{fake.channel}>" in await command(world, "settings channel close", channel_id=old_thread)


async def test_settings_survive_a_restart(world: World) -> None:
    fake = world.fake
    await world.start()
    await set_persona(world, HOOK)
    await command(world, "settings channel open")
    await world.restart()
    message = await fake.user_message(fake.channel, "no mention, after the restart")
    assert await answer_to(world, message) == ["Hello from the brain!"]
    assert HOOK in system_prompt(world.brain.requests[-1])


async def test_a_servers_settings_never_reach_another_server(world: World) -> None:
    fake = world.fake
    other = fake.add_guild("elsewhere")
    await world.start()
    await set_persona(world, HOOK)
    await command(world, "settings channel open")
    await command(world, "settings block", {"who": fake.bob})
    await command(world, "settings limits", {"daily_tokens": 1})

    elsewhere = other.channels["general"]
    shown = await command(world, "settings show", channel_id=elsewhere)
    assert HOOK not in shown and "*set for this channel*" not in shown and "*server-wide*" not in shown
    first = await fake.user_message(elsewhere, f"<@{fake.bot_id}> hi from elsewhere", author=fake.bob)
    assert await answer_to(world, first) == ["Hello from the brain!"], "bob is blocked only in the first server"
    assert HOOK not in system_prompt(world.brain.requests[-1])
    second = await fake.user_message(elsewhere, f"<@{fake.bot_id}> again", author=fake.bob)
    assert await answer_to(world, second) == ["Hello from the brain!"], "the daily limit is the first server's"
    requests = len(world.brain.requests)
    await unanswered(world, await fake.user_message(elsewhere, "no mention here"), requests)


async def test_a_channel_deleted_in_discord_forgets_its_settings(world: World) -> None:
    fake = world.fake
    doomed = fake.add_channel(fake.guild.id, "doomed")
    await world.start()
    await set_persona(world, LIBRARIAN, options={"channel": doomed})
    await command(world, "settings channel open", {"channel": doomed})
    settings = world.service.server_settings
    assert doomed in (await settings.record(fake.guild.id)).channels
    fake.delete_channel(doomed)
    for _ in range(50):  # CHANNEL_DELETE reaches the bot soon
        if doomed not in (await settings.record(fake.guild.id)).channels:
            break
        await asyncio.sleep(0.1)
    assert doomed not in (await settings.record(fake.guild.id)).channels


async def test_the_model_option_offers_default_and_the_allowed_models_that_match_what_is_typed(world: World) -> None:
    await world.start(allowed_models="brain:small-model,brain:other-model,huggingface:org/small-instruct")
    cog = world.bot.get_cog("ServerSettingsCommands")
    offered = await cog._model_choices(None, "SMALL")  # the fake has no autocomplete interactions: asked directly
    assert [choice.value for choice in offered] == ["brain:small-model", "huggingface:org/small-instruct"]
    everything = await cog._model_choices(None, "")
    assert [choice.name for choice in everything][0] == "default" and len(everything) == 4
