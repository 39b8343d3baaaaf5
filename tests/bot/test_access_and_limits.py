"""Who Kor'tana answers where, as a server's admins set it: open channels and their threads, a thread for each
new message, allow and block rules for members, roles and channels, the daily limit and /usage, DMs."""

from __future__ import annotations

import pytest

from app.bot.sentences import DMS_OFF, NOT_FOR_YOU_HERE
from tests.bot.settings_kit import command, unanswered
from tests.fakes.discord import PERM_CREATE_PUBLIC_THREADS
from tests.fakes.openai_server import Reply
from tests.helpers import World, answer_to, interaction_text, mention

HELLO = ["Hello from the brain!"]


async def test_an_open_channel_and_its_threads_are_answered_without_a_mention_a_closed_one_is_not(
    world: World,
) -> None:
    fake = world.fake
    quiet = fake.add_channel(fake.guild.id, "quiet")
    await world.start()
    before = len(world.brain.requests)
    await unanswered(world, await fake.user_message(fake.channel, "nobody opened this channel"), before)

    assert "Done" in await command(world, "settings channel open")
    assert await answer_to(world, await fake.user_message(fake.channel, "no mention needed")) == HELLO
    thread = fake.add_thread(fake.channel, "side talk")
    assert await answer_to(world, await fake.user_message(thread, "in a thread of it")) == HELLO
    before = len(world.brain.requests)
    await unanswered(world, await fake.user_message(quiet, "another channel stays closed"), before)

    assert "Done" in await command(world, "settings channel close")
    before = len(world.brain.requests)
    await unanswered(world, await fake.user_message(fake.channel, "closed again"), before)
    await unanswered(world, await fake.user_message(thread, "and its thread"), before)
    assert await answer_to(world, await mention(world, "a mention still works")) == HELLO


async def test_closing_a_channel_overrides_chat_channel_ids(world: World) -> None:
    fake = world.fake
    await world.start(chat_channel_ids=[fake.channel])
    assert await answer_to(world, await fake.user_message(fake.channel, "open by the operator")) == HELLO
    await command(world, "settings channel close")
    before = len(world.brain.requests)
    await unanswered(world, await fake.user_message(fake.channel, "closed by the server"), before)


async def test_an_open_channel_with_threads_answers_each_new_message_in_a_thread_of_its_own(world: World) -> None:
    fake = world.fake
    await world.start(history_scope="channel")
    assert "thread" in await command(world, "settings channel open", {"threads": True})
    message = await fake.user_message(fake.channel, "What is the tallest mountain?")
    thread_id = int(message["id"])  # Discord gives a thread started from a message the message's id
    await fake.wait_for(lambda: fake.texts(thread_id) == HELLO and world.bot.active_turns == 0, what="the answer")
    assert fake.texts(fake.channel) == [], "the answer is in the thread, not the channel"
    assert fake.channel_payload(thread_id)["name"] == "What is the tallest mountain?"

    follow_up = await fake.user_message(thread_id, "and the second tallest?")
    await fake.wait_for(lambda: len(fake.texts(thread_id)) == 2 and world.bot.active_turns == 0, what="a reply")
    assert int(follow_up["id"]) < int(fake.bot_messages(thread_id)[-1].id)
    assert [m["content"] for m in world.brain.requests[-1].messages[1:]] == [
        "What is the tallest mountain?",
        "Hello from the brain!",
        "and the second tallest?",
    ], "the thread is one conversation of its own"
    assert len(fake.calls_matching("POST", r"/channels/\d+/messages/\d+/threads")) == 1, "no thread in a thread"


@pytest.mark.parametrize("missing", ["Create Public Threads", "Send Messages in Threads"])
async def test_opening_a_channel_with_threads_says_which_thread_permission_kortana_lacks(
    world: World, missing: str
) -> None:
    fake = world.fake
    await world.start()
    assert "missing" not in await command(world, "settings channel open", {"threads": True})
    if missing == "Create Public Threads":
        fake.deny_bot(fake.channel, PERM_CREATE_PUBLIC_THREADS)
    else:
        fake.deny_send(fake.add_thread(fake.channel, "any thread"))  # denied in every thread of the channel
    await fake.wait_for(lambda: _lacks(world, missing), what="CHANNEL_UPDATE")
    answer = await command(world, "settings channel open", {"threads": True})
    assert "Done" in answer and missing in answer and answer.count(missing) == 1, answer
    assert (await world.service.server_settings.effective(fake.guild.id, fake.channel)).threads.value, "still stored"
    assert "missing" not in await command(world, "settings channel open"), "without threads, none are needed"


def _lacks(world: World, permission: str) -> bool:
    channel = world.bot.get_channel(world.fake.channel)
    allowed = channel.permissions_for(channel.guild.me)
    return not getattr(allowed, permission.lower().replace(" ", "_"))


async def test_a_thread_discord_refuses_gives_way_to_an_answer_in_the_channel(world: World) -> None:
    fake = world.fake
    await world.start()
    await command(world, "settings channel open", {"threads": True})
    fake.deny_bot(fake.channel, PERM_CREATE_PUBLIC_THREADS)
    message = await fake.user_message(fake.channel, "no threads for me?")
    assert await answer_to(world, message) == HELLO
    (refused,) = fake.calls_matching("POST", r"/channels/\d+/messages/\d+/threads")
    assert refused.status == 403
    assert fake.bot_messages(fake.channel)[-1].data["message_reference"]["message_id"] == message["id"]


async def test_a_threads_name_is_the_message_as_people_see_it_within_discords_cap(world: World) -> None:
    fake = world.fake
    await world.start()
    await command(world, "settings channel open", {"threads": True})
    message = await fake.user_message(fake.channel, f"<@{fake.bob['id']}> said <#{fake.channel}> is " + "long " * 30)
    await fake.wait_for(lambda: fake.texts(int(message["id"])) == HELLO, what="the answer in its thread")
    name = fake.channel_payload(int(message["id"]))["name"]
    assert name.lower().startswith("@bob said #general is long") and "<" not in name
    assert len(name) == 100 and name.endswith("…")


async def test_a_file_alone_in_a_channel_with_threads_names_its_thread_after_the_file(world: World) -> None:
    fake = world.fake
    await world.start()
    await command(world, "settings channel open", {"threads": True})
    file = {"filename": "notes.txt", "content": b"remember the milk", "content_type": "text/plain"}
    message = await fake.user_message(fake.channel, "", attachments=[file])
    await fake.wait_for(lambda: fake.texts(int(message["id"])) == HELLO, what="the answer in its thread")
    assert fake.channel_payload(int(message["id"]))["name"] == "notes.txt"


async def test_a_blocked_member_gets_silence_in_channels_and_one_private_sentence_for_ask(world: World) -> None:
    fake = world.fake
    await world.start()
    assert "blocked" in await command(world, "settings block", {"who": fake.bob})
    before = len(world.brain.requests)
    await unanswered(world, await mention(world, "hello?", author=fake.bob), before)
    asked = await fake.slash_command("ask", {"question": "hello?"}, user=fake.bob)
    assert await interaction_text(world, asked) == NOT_FOR_YOU_HERE and asked.ephemeral
    assert len(world.brain.requests) == before
    assert await answer_to(world, await mention(world, "and me?")) == HELLO, "alice is not blocked"

    assert "no rule any more" in await command(world, "settings remove-rule", {"who": fake.bob})
    assert await answer_to(world, await mention(world, "unblocked?", author=fake.bob)) == HELLO


async def test_a_blocked_role_and_a_blocked_channel_with_its_threads_get_no_answer(world: World) -> None:
    fake = world.fake
    elsewhere = fake.add_channel(fake.guild.id, "elsewhere")
    pirates = fake.add_role(fake.guild.id, "pirates")
    fake.give_role(fake.bob, fake.guild.id, pirates)
    await world.start()
    await command(world, "settings block", {"who": pirates})
    before = len(world.brain.requests)
    await unanswered(world, await mention(world, "arr", author=fake.bob), before)

    await command(world, "settings block", {"channel": elsewhere})
    thread = fake.add_thread(elsewhere, "a thread")
    await unanswered(world, await fake.user_message(elsewhere, f"<@{fake.bot_id}> here?"), before)
    await unanswered(world, await fake.user_message(thread, f"<@{fake.bot_id}> or here?"), before)
    assert await answer_to(world, await mention(world, "general is fine")) == HELLO


async def test_a_thread_the_bot_never_cached_follows_its_parent_and_one_that_cannot_be_known_is_not_answered(
    world: World,
) -> None:
    fake = world.fake
    elsewhere = fake.add_channel(fake.guild.id, "elsewhere")
    under_blocked = fake.add_thread(elsewhere, "from long ago", archived=True)  # no THREAD_CREATE, not cached
    under_open = fake.add_thread(fake.channel, "old talk", archived=True)
    unknowable = fake.add_thread(fake.channel, "lost", archived=True)
    await world.start()
    await command(world, "settings block", {"channel": elsewhere})
    await command(world, "settings channel open")
    before = len(world.brain.requests)
    await unanswered(world, await fake.user_message(under_blocked, f"<@{fake.bot_id}> here?"), before)
    assert await answer_to(world, await fake.user_message(under_open, "no mention needed")) == HELLO

    fake.fail("GET", rf"/channels/{unknowable}", 403, code=50001, times=None)
    before = len(world.brain.requests)
    await unanswered(world, await fake.user_message(unknowable, f"<@{fake.bot_id}> and here?"), before)


async def test_once_something_is_allowed_only_what_is_allowed_is_answered_and_blocked_wins(world: World) -> None:
    fake = world.fake
    allowed_channel = fake.add_channel(fake.guild.id, "allowed")
    crew = fake.add_role(fake.guild.id, "crew")
    carol = fake.add_user("carol")
    fake.give_role(fake.bob, fake.guild.id, crew)
    fake.give_role(carol, fake.guild.id, crew)
    await world.start()

    assert "allowed" in await command(world, "settings allow", {"channel": allowed_channel})
    before = len(world.brain.requests)
    await unanswered(world, await mention(world, "in general?"), before)
    assert await answer_to(world, await fake.user_message(allowed_channel, f"<@{fake.bot_id}> here?")) == HELLO

    await command(world, "settings allow", {"who": crew})
    before = len(world.brain.requests)
    await unanswered(world, await fake.user_message(allowed_channel, f"<@{fake.bot_id}> me?"), before)  # alice
    bob_asks = await fake.user_message(allowed_channel, f"<@{fake.bot_id}> crew here", author=fake.bob)
    assert await answer_to(world, bob_asks) == HELLO

    await command(world, "settings block", {"who": carol})
    before = len(world.brain.requests)
    carol_asks = await fake.user_message(allowed_channel, f"<@{fake.bot_id}> crew too", author=carol)
    await unanswered(world, carol_asks, before)


async def test_a_member_over_the_daily_limit_is_told_when_it_renews_and_no_model_is_called(world: World) -> None:
    fake = world.fake
    await world.start()
    assert "5 tokens a day" in await command(world, "settings limits", {"daily_tokens": 5})
    assert await answer_to(world, await mention(world, "a first question")) == HELLO  # costs more than 5
    requests = len(world.brain.requests)
    over = await answer_to(world, await mention(world, "a second one"))
    assert len(over) == 1 and "5 tokens" in over[0] and "<t:" in over[0] and ":R>" in over[0]
    assert len(world.brain.requests) == requests
    asked = await fake.slash_command("ask", {"question": "and by slash?"})
    assert "renews" in await interaction_text(world, asked) and asked.ephemeral
    assert len(world.brain.requests) == requests

    usage = await command(world, "usage")
    used = await world.service.usage.used_today(fake.guild.id, int(fake.alice["id"]))
    assert used > 5 and f"**{used:,} tokens** of your **5 tokens** a day" in usage and "renews <t:" in usage
    bob_asks = await mention(world, "bob has his own share", author=fake.bob)
    assert await answer_to(world, bob_asks) == HELLO

    assert "no daily limit" in await command(world, "settings limits", {"daily_tokens": 0})
    assert await answer_to(world, await mention(world, "and now?")) == HELLO


async def test_a_servers_cooldown_replaces_the_operators(world: World) -> None:
    await world.start(user_cooldown_seconds=0)
    assert "30 s" in await command(world, "settings limits", {"cooldown_seconds": 30})
    await answer_to(world, await mention(world, "one"))
    assert "Easy there" in (await answer_to(world, await mention(world, "two, right away")))[0]
    await command(world, "settings limits", {"reset": True})
    assert await answer_to(world, await mention(world, "three, after the reset")) == HELLO


async def test_dms_have_the_operators_daily_limit_and_switch(world: World) -> None:
    fake = world.fake
    await world.start(daily_token_limit=5)
    dm = await fake.dm_message(fake.alice, "hello in private")
    assert await answer_to(world, dm) == HELLO
    usage = await command(world, "usage", dm=True)
    assert "of your **5 tokens** a day in our DMs" in usage
    requests = len(world.brain.requests)
    over = await answer_to(world, await fake.dm_message(fake.alice, "more?"))
    assert "renews <t:" in over[0] and len(world.brain.requests) == requests

    await world.restart(dm_enabled=False)
    dm = await fake.dm_message(fake.bob, "still there?")
    assert await answer_to(world, dm) == [DMS_OFF]
    assert len(world.brain.requests) == requests


async def test_ping_shows_the_tokens_of_today(world: World) -> None:
    await world.start()
    await answer_to(world, await mention(world, "spend a little"))
    total = await world.service.usage.today_total()
    assert total > 0
    assert f"Tokens today: {total:,}" in await command(world, "ping")


async def test_a_turn_waiting_behind_the_answer_that_used_the_daily_limit_gets_the_notice_not_the_model(
    world: World,
) -> None:
    fake = world.fake
    await world.start()
    await command(world, "settings limits", {"daily_tokens": 5})
    world.brain.script = [Reply("Hello from the brain!", chunks=3, chunk_delay_s=0.2)]  # still running at the second
    requests = len(world.brain.requests)
    first = await mention(world, "a first question")
    second = await mention(world, "and a second, right away")
    answers = await answer_to(world, first, count=2)
    assert answers[0] == HELLO[0]
    assert "5 tokens" in answers[1] and "renews" in answers[1], answers
    notice = fake.bot_messages(fake.channel)[-1]
    assert notice.data["message_reference"]["message_id"] == second["id"], "the notice answers the second message"
    assert len(world.brain.requests) == requests + 1, "only the first question reached the model"
