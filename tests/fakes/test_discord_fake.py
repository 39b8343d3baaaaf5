"""The fake Discord API works with the real discord.py client (see tests/fakes/discord/).

Reusable pattern for other tests::

    @pytest.fixture
    async def fake():
        async with FakeDiscord() as fake:   # patches Route.BASE / DEFAULT_GATEWAY, restores on exit
            yield fake

    async def test_something(fake):
        async with fake.running(make_the_bot()) as runner:   # started, ready; closed at the end
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import re
import time

import discord
import discord.gateway
import discord.http
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord import FakeDiscord
from tests.fakes.discord.state import DiscordState

MESSAGES = r"/channels/\d+/messages"
A_MESSAGE = r"/channels/\d+/messages/\d+"
NO_PINGS = discord.AllowedMentions.none()


@pytest.fixture
async def fake():
    async with FakeDiscord() as fake:
        yield fake
        assert not fake.internal_errors, fake.internal_errors[0]
        assert not fake.unhandled, [f"{c.method} {c.path}" for c in fake.unhandled]


def make_bot(*, message_content: bool = False, cls=commands.Bot, **options) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = message_content
    allowed_mentions = options.pop("allowed_mentions", NO_PINGS)
    return cls(command_prefix="!", intents=intents, allowed_mentions=allowed_mentions, **options)


def answering_bot(**kwargs) -> commands.Bot:
    """Answers mentions, replies to itself and DMs (never bots or webhooks) with 'echo: <text>'."""
    bot = make_bot(**kwargs)

    async def on_message(message: discord.Message) -> None:
        if message.author.bot or message.webhook_id:
            return
        is_dm = message.guild is None
        mentioned = bot.user in message.mentions
        ref = message.reference.resolved if message.reference else None
        replied = isinstance(ref, discord.Message) and ref.author == bot.user
        if is_dm or mentioned or replied:
            text = re.sub(rf"<@!?{bot.user.id}>", "", message.content).strip()
            await message.channel.send(f"echo: {text}", reference=message if not is_dm else None)

    bot.add_listener(on_message)
    return bot


# ------------------------------------------------------------------------------------------- start-up


def test_every_hook_the_state_declares_is_implemented_by_a_part() -> None:
    # The fake's own wiring (the one place a test looks inside the package): a part renamed or dropped would
    # otherwise leave a sibling calling the stub.
    def function(member: object) -> object:
        return member.fget if isinstance(member, property) else getattr(member, "__func__", member)

    hooks = {
        name: member
        for name, member in vars(DiscordState).items()
        if callable(function(member)) and "raise NotImplementedError" in inspect.getsource(function(member))
    }
    assert {"dispatch", "gateway_url", "_bot_message", "_check_rate_limit", "_followup"} <= hooks.keys()
    assert [name for name, stub in hooks.items() if inspect.getattr_static(FakeDiscord, name) is stub] == []


async def test_class_attributes_are_patched_and_restored() -> None:
    before = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    async with FakeDiscord() as fake:
        assert fake.api_base_url == discord.http.Route.BASE
        assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == fake.gateway_url
    assert before == (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)


async def test_bot_logs_in_and_becomes_ready_quickly(fake: FakeDiscord) -> None:
    bot = make_bot()
    async with fake.running(bot, "secret-token") as runner:
        assert runner.ready_after < 1.0, runner.ready_after
        assert bot.user.id == fake.bot_id
        assert bot.application_id == fake.application_id
        guild = bot.get_guild(fake.guild.id)
        assert guild is not None and not guild.unavailable
        general, readonly = guild.get_channel(fake.channel), guild.get_channel(fake.readonly_channel)
        assert general.permissions_for(guild.me).send_messages
        assert not readonly.permissions_for(guild.me).send_messages
        assert readonly.permissions_for(guild.me).read_messages
        (identify,) = fake.identifies
        assert identify["token"] == "secret-token"
        assert identify["intents"] == bot.intents.value
        assert fake.calls_matching("GET", "/users/@me") and fake.calls_matching("GET", "/oauth2/applications/@me")
        await fake.wait_for(lambda: fake.connections[0].heartbeats >= 1)
    assert bot.is_closed()


async def test_auto_sharded_bot_with_two_shards(fake: FakeDiscord) -> None:
    second = fake.add_guild("Second", channels=("lobby",))
    assert fake.shard_for(fake.guild.id, 2) == 0 and fake.shard_for(second.id, 2) == 1
    bot = answering_bot(cls=commands.AutoShardedBot, shard_count=2)
    async with fake.running(bot) as runner:
        assert runner.ready_after < 1.0, runner.ready_after
        assert sorted(c.shard_id for c in fake.connections) == [0, 1]
        assert {g.id for g in bot.guilds} == {fake.guild.id, second.id}
        await fake.user_message(second.channels["lobby"], f"<@{fake.bot_id}> via shard one")
        await fake.wait_for(lambda: fake.texts(second.channels["lobby"]))
        assert fake.live_connection(1).events.count("MESSAGE_CREATE") >= 1
        assert "MESSAGE_CREATE" not in fake.live_connection(0).events
        assert fake.texts(second.channels["lobby"]) == ["echo: via shard one"]


async def test_auto_sharded_bot_asks_gateway_bot_for_shard_count() -> None:
    async with FakeDiscord(recommended_shards=2) as fake:
        bot = make_bot(cls=commands.AutoShardedBot)
        async with fake.running(bot):
            assert fake.calls_matching("GET", "/gateway/bot")
            assert bot.shard_count == 2 and sorted(c.shard_id for c in fake.connections) == [0, 1]


async def test_bad_token_is_login_failure() -> None:
    async with FakeDiscord(token="good") as fake:
        with pytest.raises(discord.LoginFailure):
            await fake.start_bot(make_bot(), "bad")
        assert fake.calls[-1].status == 401


async def test_close_4014_is_privileged_intents_required(fake: FakeDiscord) -> None:
    fake.close_on_identify(4014)
    with pytest.raises(discord.PrivilegedIntentsRequired):
        await fake.start_bot(make_bot(message_content=True))


async def test_privileged_intent_not_enabled_in_portal() -> None:
    async with FakeDiscord(privileged_intents=set()) as fake:
        with pytest.raises(discord.PrivilegedIntentsRequired):
            await fake.start_bot(make_bot(message_content=True))
        async with fake.running(make_bot(message_content=False)):  # no privileged intent: fine
            pass


async def test_close_4004_on_identify(fake: FakeDiscord) -> None:
    fake.close_on_identify(4004)
    with pytest.raises(discord.ConnectionClosed) as info:
        await fake.start_bot(make_bot())
    assert info.value.code == 4004


async def test_resume_after_reconnect_request(fake: FakeDiscord) -> None:
    bot = answering_bot()
    async with fake.running(bot):
        await fake.reconnect(0)
        await fake.wait_for(lambda: "RESUMED" in fake.connections[-1].events)
        assert len(fake.identifies) == 1
        await fake.user_message(fake.channel, f"<@{fake.bot_id}> still there?")
        await fake.wait_for(lambda: fake.texts(fake.channel))


# -------------------------------------------------------------------------------------------- messages


async def test_mention_is_answered_with_a_reply_that_pings_nobody(fake: FakeDiscord) -> None:
    async with fake.running(answering_bot()):
        sent = await fake.user_message(fake.channel, f"<@!{fake.bot_id}> hi @everyone")
        (reply,) = await fake.wait_for(lambda: fake.bot_messages(fake.channel))
    assert reply.content == "echo: hi @everyone"
    (call,) = fake.calls_matching("POST", MESSAGES)
    assert call.json["allowed_mentions"] == {"parse": []}
    assert str(call.json["message_reference"]["message_id"]) == sent["id"]
    assert reply.data["referenced_message"]["id"] == sent["id"]
    assert reply.pings == set()


async def test_message_without_allowed_mentions_pings(fake: FakeDiscord) -> None:
    bot = make_bot(allowed_mentions=None)
    async with fake.running(bot):
        channel = bot.get_channel(fake.channel)
        message = await channel.send(f"@everyone look <@{fake.alice['id']}>")
    assert fake.message(message.id).pings == {"everyone", f"user:{fake.alice['id']}"}


async def test_dm_reply_to_bot_and_bots_and_webhooks(fake: FakeDiscord) -> None:
    async with fake.running(answering_bot()):
        await fake.dm_message(fake.bob, "hello in private")
        dm = fake.dm_channel(fake.bob)
        await fake.wait_for(lambda: fake.texts(dm))
        assert fake.texts(dm) == ["echo: hello in private"]

        first = await fake.user_message(fake.channel, f"<@{fake.bot_id}> one")
        (bot_reply,) = await fake.wait_for(lambda: fake.bot_messages(fake.channel))
        await fake.user_message(fake.channel, "two", reply_to=bot_reply.id)
        await fake.wait_for(lambda: len(fake.bot_messages(fake.channel)) == 2)
        assert fake.texts(fake.channel) == ["echo: one", "echo: two"]
        assert first["mentions"][0]["id"] == str(fake.bot_id)

        other_bot = fake.add_user("otherbot", bot=True)
        await fake.user_message(fake.channel, f"<@{fake.bot_id}> from a bot", author=other_bot)
        await fake.user_message(fake.channel, f"<@{fake.bot_id}> from a hook", webhook_id=4242)
        await fake.user_message(fake.channel, "plain chatter, not for the bot")
        await asyncio.sleep(0.1)
        assert len(fake.bot_messages(fake.channel)) == 2


async def test_message_content_intent_rule(fake: FakeDiscord) -> None:
    bot = make_bot(message_content=False)
    seen: list[str] = []

    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            seen.append(message.content)

    bot.add_listener(on_message)
    async with fake.running(bot):
        await fake.user_message(fake.channel, "no mention")
        await fake.user_message(fake.channel, f"<@{fake.bot_id}> mention")
        await fake.dm_message(fake.alice, "direct")
        await fake.wait_for(lambda: len(seen) == 3)
    assert seen == ["", f"<@{fake.bot_id}> mention", "direct"]


def _recorder(seen: list[str]):  # type: ignore[no-untyped-def]
    """An on_message listener that keeps what people (not bots) wrote."""

    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            seen.append(message.content)

    return on_message


async def test_a_reply_with_the_ping_off_carries_no_text_without_the_intent() -> None:
    for message_content, expected in ((False, ""), (True, "a quiet reply")):
        async with FakeDiscord() as fake:
            bot = make_bot(message_content=message_content)
            seen: list[str] = []
            bot.add_listener(_recorder(seen), "on_message")
            async with fake.running(bot):
                own = await bot.get_channel(fake.channel).send("the bot said this")
                await fake.user_message(fake.channel, "a quiet reply", reply_to=own.id, reply_ping=False)
                await fake.wait_for(lambda seen=seen: seen)
            assert seen == [expected]


async def test_a_delayed_call_is_held_and_others_are_not(fake: FakeDiscord) -> None:
    bot = make_bot()
    async with fake.running(bot):
        channel = bot.get_channel(fake.channel)
        fake.delay("POST", r"/channels/\d+/typing", 5.0)
        typing = asyncio.create_task(_send_typing(channel))
        await fake.wait_for(lambda: fake.calls_matching("POST", r"/channels/\d+/typing"))
        await channel.send("not held")
        [call] = fake.calls_matching("POST", r"/channels/\d+/typing")
        assert call.status is None, "the typing call is still held"
        assert fake.texts(fake.channel) == ["not held"]
        typing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await typing


async def _send_typing(channel: discord.abc.Messageable) -> None:
    await channel.typing()


async def test_edits_and_deletes_show_final_state(fake: FakeDiscord) -> None:
    bot = make_bot(message_content=True)
    edits: list[tuple[str, str]] = []
    deleted: list[int] = []

    async def on_message_edit(before: discord.Message, after: discord.Message) -> None:
        edits.append((before.content, after.content))

    async def on_raw_message_delete(payload: discord.RawMessageDeleteEvent) -> None:
        deleted.append(payload.message_id)

    bot.add_listener(on_message_edit)
    bot.add_listener(on_raw_message_delete)
    async with fake.running(bot):
        channel = bot.get_channel(fake.channel)
        async with channel.typing():
            message = await channel.send("a")
        for text in ("ab", "abc"):
            message = await message.edit(content=text)
        assert fake.texts(fake.channel) == ["abc"]
        assert fake.message(message.id).versions == ["a", "ab", "abc"]
        assert fake.typing == [fake.channel]

        user_msg = await fake.user_message(fake.channel, "typo")
        await fake.wait_for(lambda: any(m.id == int(user_msg["id"]) for m in bot.cached_messages))
        await fake.edit_user_message(user_msg["id"], "fixed")
        await fake.delete_message(user_msg["id"])
        await fake.wait_for(lambda: deleted == [int(user_msg["id"])])
        assert ("typo", "fixed") in edits
        assert [m.content for m in fake.messages(fake.channel)] == ["abc"]


async def test_file_upload_is_multipart_with_payload_json(fake: FakeDiscord) -> None:
    bot = make_bot()
    async with fake.running(bot):
        await bot.get_channel(fake.channel).send("see file", file=discord.File(io.BytesIO(b"hello"), "a.txt"))
    (call,) = fake.calls_matching("POST", MESSAGES)
    assert call.json["content"] == "see file"
    assert [(f["filename"], f["data"]) for f in call.files] == [("a.txt", b"hello")]
    assert fake.bot_messages(fake.channel)[0].data["attachments"][0]["filename"] == "a.txt"


async def test_guild_join_and_permission_change_reach_a_running_bot(fake: FakeDiscord) -> None:
    bot = make_bot()
    async with fake.running(bot):
        new = fake.add_guild("Joined later", channels=("hall",))
        await fake.wait_for(lambda: bot.get_guild(new.id))
        hall = bot.get_channel(new.channels["hall"])
        assert hall.permissions_for(hall.guild.me).send_messages
        fake.deny_send(new.channels["hall"])
        hall_channel = new.channels["hall"]
        await fake.wait_for(lambda: not bot.get_channel(hall_channel).permissions_for(hall.guild.me).send_messages)
        with pytest.raises(discord.Forbidden):
            await bot.get_channel(new.channels["hall"]).send("hi")


async def test_forbidden_channel_and_too_long_message(fake: FakeDiscord) -> None:
    bot = make_bot()
    async with fake.running(bot):
        with pytest.raises(discord.Forbidden) as info:
            await bot.get_channel(fake.readonly_channel).send("hello?")
        assert info.value.code == 50013
        with pytest.raises(discord.HTTPException) as info:
            await bot.get_channel(fake.channel).send("x" * 2001)
        assert info.value.status == 400 and info.value.code == 50035
        await bot.get_channel(fake.channel).send("x" * 2000)


async def test_429_on_edit_is_survived(fake: FakeDiscord) -> None:
    bot = make_bot()
    async with fake.running(bot):
        message = await bot.get_channel(fake.channel).send("draft")
        fault = fake.rate_limit("PATCH", A_MESSAGE, retry_after=0.2)
        started = time.monotonic()
        await message.edit(content="final")
        assert time.monotonic() - started >= 0.2
    assert fault.hits == 1
    assert [c.status for c in fake.calls_matching("PATCH", A_MESSAGE)] == [429, 200]
    assert fake.texts(fake.channel) == ["final"]


async def test_rate_limit_buckets_are_honoured_by_discord_py() -> None:
    limits = {"PATCH /channels/{channel_id}/messages/{message_id}": (2, 0.3)}
    async with FakeDiscord(rate_limits=limits) as fake:
        bot = make_bot()
        async with fake.running(bot):
            message = await bot.get_channel(fake.channel).send("0")
            for i in range(1, 6):
                message = await message.edit(content=str(i))
        statuses = [c.status for c in fake.calls_matching("PATCH", A_MESSAGE)]
        assert statuses == [200] * 5  # discord.py waited on X-RateLimit-Remaining: 0
        assert fake.texts(fake.channel) == ["5"]


# ----------------------------------------------------------------------------------------- interactions


def slash_bot(guild_id: int) -> commands.Bot:
    bot = make_bot()
    guild = discord.Object(id=guild_id)

    @app_commands.command(name="ask", description="Ask something")
    @app_commands.describe(question="What to ask")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(f"thinking about {question}...")
        await interaction.edit_original_response(content=f"answer to {question}")

    @app_commands.command(name="reset", description="Forget")
    async def reset(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Forgot 3 messages.", ephemeral=True)
        await interaction.followup.send("Start afresh.", ephemeral=True)

    bot.tree.add_command(ask, guild=guild)
    bot.tree.add_command(reset)

    async def setup_hook() -> None:
        await bot.tree.sync(guild=guild)
        await bot.tree.sync()

    bot.setup_hook = setup_hook
    return bot


async def test_slash_command_defer_followup_and_edit(fake: FakeDiscord) -> None:
    async with fake.running(slash_bot(fake.guild.id)):
        assert [c["name"] for c in fake.commands[fake.guild.id]] == ["ask"]
        assert [c["name"] for c in fake.commands[None]] == ["reset"]
        inter = await fake.slash_command("ask", {"question": "life"})
        await fake.wait_for(lambda: inter.original and inter.original.edits >= 2)

        reset = await fake.slash_command("reset", user=fake.bob)
        await fake.wait_for(lambda: reset.followups)
        in_dm = await fake.slash_command("reset", dm=True)
        await fake.wait_for(lambda: in_dm.followups)

    assert inter.deferred and inter.callbacks == [{"type": 5}]
    assert inter.ack_latency < 1.0
    assert inter.original.content == "answer to life"
    assert inter.original.versions == ["", "thinking about life...", "answer to life"]
    assert not inter.original.loading and not inter.ephemeral
    assert inter.followups == []  # the first followup replaced the "thinking" message
    assert fake.calls_matching("POST", r"/webhooks/\d+/[^/]+")
    assert fake.calls_matching("PATCH", r"/webhooks/\d+/[^/]+/messages/@original")
    assert inter.original.data["interaction_metadata"]["name"] == "ask"

    assert reset.response_type == 4 and reset.ephemeral
    assert reset.original.content == "Forgot 3 messages."
    assert [m.content for m in reset.followups] == ["Start afresh."] and reset.followups[0].ephemeral
    assert in_dm.guild_id is None and in_dm.original.channel_id == fake.dm_channel(fake.alice)
    assert fake.texts(fake.channel) == ["answer to life"]  # ephemeral ones are not in the channel view


async def test_late_interaction_ack_is_unknown_interaction(fake: FakeDiscord) -> None:
    fake.interaction_ack_timeout = 0.05
    bot = make_bot()
    errors: list[Exception] = []

    @bot.tree.command(name="slow", description="Too slow")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.1)
        try:
            await interaction.response.defer()
        except discord.NotFound as exc:
            errors.append(exc)

    async with fake.running(bot):
        await fake.slash_command("slow")
        await fake.wait_for(lambda: errors)
    assert errors[0].code == 10062
