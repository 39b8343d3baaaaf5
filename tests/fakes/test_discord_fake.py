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

from tests.fakes.discord import PERM_ADMINISTRATOR, PERM_MANAGE_GUILD, FakeDiscord
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


def make_bot(*, message_content: bool = False, members: bool = False, cls=commands.Bot, **options) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = message_content
    intents.members = members
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


# ---------------------------------------------------------------------------------- servers: roles, threads


def members_bot() -> commands.Bot:
    """A bot with the Server Members intent (so discord.py caches members and hears GUILD_MEMBER_UPDATE) and a
    /whoami command that reports what discord.py makes of the member who runs it."""
    bot = make_bot(members=True)
    seen: list[dict[str, object]] = []

    @bot.tree.command(name="whoami", description="What discord.py sees")
    async def whoami(interaction: discord.Interaction) -> None:
        seen.append(
            {
                "manage_guild": interaction.permissions.manage_guild,
                "administrator": interaction.permissions.administrator,
                "roles": [role.id for role in interaction.user.roles if not role.is_default()],
                "app_send": interaction.app_permissions.send_messages,
            }
        )
        await interaction.response.send_message("noted", ephemeral=True)

    bot.seen = seen  # type: ignore[attr-defined]
    return bot


async def test_roles_and_the_permissions_members_have(fake: FakeDiscord) -> None:
    bot = members_bot()
    carol = fake.add_user("carol")
    async with fake.running(bot):
        moderators = fake.add_role(fake.guild.id, "Moderators", permissions=PERM_MANAGE_GUILD)
        admins = fake.add_role(fake.guild.id, "Admins", permissions=PERM_ADMINISTRATOR)
        guild = bot.get_guild(fake.guild.id)
        await fake.wait_for(lambda: guild.get_role(admins) is not None, what="GUILD_ROLE_CREATE")
        assert guild.get_role(moderators).permissions.manage_guild and guild.owner_id == int(fake.alice["id"])

        for who in (fake.alice, fake.bob, carol):
            inter = await fake.slash_command("whoami", user=who)
            await fake.wait_for(lambda inter=inter: inter.acknowledged)
        fake.give_role(fake.bob, fake.guild.id, moderators)
        fake.give_role(carol, fake.guild.id, admins)
        bob = int(fake.bob["id"])
        await fake.wait_for(lambda: [r.id for r in guild.get_member(bob).roles][1:] == [moderators])
        for who in (fake.bob, carol):
            await fake.slash_command("whoami", user=who)
        await fake.wait_for(lambda: len(bot.seen) == 5)

        sent = await fake.user_message(fake.channel, "a moderator speaks", author=fake.bob)
        assert sent["member"]["roles"] == [str(moderators)]
        fake.take_role(fake.bob, fake.guild.id, moderators)
        await fake.wait_for(lambda: guild.get_member(bob).roles == [guild.default_role])

    owner, plain_bob, plain_carol, moderator_bob, admin_carol = bot.seen
    assert owner["manage_guild"] and owner["administrator"]
    assert not plain_bob["manage_guild"] and not plain_carol["manage_guild"] and plain_bob["roles"] == []
    assert moderator_bob == {"manage_guild": True, "administrator": False, "roles": [moderators], "app_send": True}
    assert admin_carol["administrator"] and admin_carol["manage_guild"]
    assert fake.member_permissions(fake.guild.id, bob) & PERM_MANAGE_GUILD == 0


async def test_without_the_members_intent_member_updates_are_not_sent(fake: FakeDiscord) -> None:
    async with fake.running(make_bot()):
        role = fake.add_role(fake.guild.id, "Regulars")
        fake.give_role(fake.bob, fake.guild.id, role)
        await fake.wait_for(lambda: ("GUILD_MEMBER_UPDATE", "intent 2 not requested") in fake.dropped_events)
        assert "GUILD_ROLE_CREATE" in fake.live_connection(0).events


def thread_bot(**kwargs) -> commands.Bot:
    """Answers every message in a thread in that thread, and starts a thread on 'thread: <name>' messages."""
    bot = make_bot(message_content=True, **kwargs)
    seen: list[discord.abc.Messageable] = []

    async def on_message(message: discord.Message) -> None:
        if message.author.bot:
            return
        seen.append(message.channel)
        if isinstance(message.channel, discord.Thread):
            await message.channel.send(f"in {message.channel.name}: {message.content}")
        elif message.content.startswith("thread: "):
            thread = await message.create_thread(name=message.content.removeprefix("thread: "))
            await thread.send("thread started")

    bot.add_listener(on_message)
    bot.seen = seen  # type: ignore[attr-defined]
    return bot


async def test_a_thread_is_announced_and_its_messages_arrive_in_a_discord_thread(fake: FakeDiscord) -> None:
    bot = thread_bot()
    async with fake.running(bot):
        thread_id = fake.add_thread(fake.channel, "questions", owner=fake.bob)
        await fake.user_message(thread_id, "hello in the thread", author=fake.bob)  # sent after THREAD_CREATE
        await fake.wait_for(lambda: fake.texts(thread_id))
        (channel,) = bot.seen
        assert isinstance(channel, discord.Thread) and channel.parent_id == fake.channel
        assert channel.owner_id == int(fake.bob["id"]) and channel.parent.name == "general"
        assert fake.texts(thread_id) == ["in questions: hello in the thread"]
        assert fake.texts(fake.channel) == [] and fake.channel_payload(thread_id)["message_count"] == 2

    later = thread_bot()
    async with fake.running(later):  # a bot that connects afterwards finds it in GUILD_CREATE
        thread = later.get_guild(fake.guild.id).get_thread(thread_id)
        assert thread is not None and thread.parent_id == fake.channel and thread.name == "questions"


async def test_a_message_in_a_thread_the_bot_never_cached_arrives_in_a_partial_messageable(fake: FakeDiscord) -> None:
    old_thread = fake.add_thread(fake.channel, "from long ago", archived=True)
    bot = thread_bot()
    async with fake.running(bot):
        assert bot.get_guild(fake.guild.id).get_thread(old_thread) is None, "not in GUILD_CREATE"
        await fake.user_message(old_thread, "anyone still here?")
        await fake.wait_for(lambda: bot.seen)
        (channel,) = bot.seen
        assert isinstance(channel, discord.PartialMessageable) and channel.id == old_thread
        fetched = await bot.get_guild(fake.guild.id).fetch_channel(old_thread)
        assert isinstance(fetched, discord.Thread) and fetched.parent_id == fake.channel and fetched.archived


async def test_the_bot_starts_a_thread_from_a_message_and_writes_in_it(fake: FakeDiscord) -> None:
    bot = thread_bot()
    async with fake.running(bot):
        sent = await fake.user_message(fake.channel, "thread: Long talk")
        thread_id = int(sent["id"])  # Discord gives a thread started from a message the message's id
        await fake.wait_for(lambda: fake.texts(thread_id))
        await fake.wait_for(lambda: bot.get_channel(thread_id) is not None, what="THREAD_CREATE")
        assert isinstance(bot.get_channel(thread_id), discord.Thread)
        assert fake.texts(thread_id) == ["thread started"] and fake.texts(fake.channel) == []
        assert fake.message(thread_id).data["thread"]["name"] == "Long talk"
        (call,) = fake.calls_matching("POST", rf"/channels/{fake.channel}/messages/{thread_id}/threads")
        assert call.json["name"] == "Long talk" and call.status == 200

        message = await bot.get_channel(fake.channel).fetch_message(thread_id)
        with pytest.raises(discord.HTTPException) as info:
            await message.create_thread(name="again")
        assert info.value.code == 160004
        general = bot.get_channel(fake.channel)
        bare = await general.create_thread(name="no starter", type=discord.ChannelType.public_thread)
        await bare.send("a thread of its own")
        assert bare.parent_id == fake.channel and fake.texts(bare.id) == ["a thread of its own"]
        in_thread = await bot.get_channel(thread_id).fetch_message(fake.bot_messages(thread_id)[0].id)
        with pytest.raises(discord.HTTPException) as info:
            await in_thread.create_thread(name="a thread in a thread")
        assert info.value.code == 50024


async def test_a_deleted_channel_is_gone_for_the_bot_and_its_threads_with_it(fake: FakeDiscord) -> None:
    bot = thread_bot()
    async with fake.running(bot):
        added = fake.add_channel(fake.guild.id, "added")
        await fake.wait_for(lambda: bot.get_channel(added) is not None, what="CHANNEL_CREATE")
        thread_id = fake.add_thread(fake.channel, "kept")
        old_thread = fake.add_thread(fake.readonly_channel, "goes with its parent")
        await fake.wait_for(lambda: bot.get_channel(old_thread) is not None)
        fake.delete_channel(fake.readonly_channel)
        fake.delete_channel(thread_id)
        await fake.wait_for(lambda: not bot.get_channel(fake.readonly_channel) and not bot.get_channel(thread_id))
        assert bot.get_guild(fake.guild.id).get_thread(old_thread) is None
        with pytest.raises(discord.NotFound) as info:
            await bot.get_partial_messageable(thread_id).send("anyone?")
        assert info.value.code == 10003
        assert fake.channel_payload(fake.readonly_channel)["name"] == "read-only"  # as it was
    with pytest.raises(AssertionError, match="deleted"):
        await fake.user_message(thread_id, "into the void")


# ------------------------------------------------------------------ typed options, subcommands and modals


def settings_bot(guild_id: int) -> commands.Bot:
    """/settings as a group with a nested group (/settings channel open) and typed options; each command
    records what discord.py handed it."""
    bot = make_bot()
    got: list[object] = []
    settings = app_commands.Group(name="settings", description="Server settings")
    channel_group = app_commands.Group(name="channel", description="Channels", parent=settings)

    @channel_group.command(name="open", description="Open a channel")
    async def open_(
        interaction: discord.Interaction, channel: app_commands.AppCommandChannel | app_commands.AppCommandThread
    ) -> None:
        got.append((interaction.command.qualified_name, channel, interaction.guild.get_channel(channel.id)))
        await interaction.response.send_message(f"opened {channel.name}", ephemeral=True)

    @settings.command(name="block", description="Block someone")
    async def block(interaction: discord.Interaction, who: discord.Member | discord.Role, days: int = 1) -> None:
        got.append((interaction.command.qualified_name, who, days))
        await interaction.response.send_message("blocked", ephemeral=True)

    @settings.command(name="role", description="A role")
    async def role(interaction: discord.Interaction, role: discord.Role, member: discord.Member) -> None:
        got.append((interaction.command.qualified_name, role, member, interaction.guild.get_role(role.id)))
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send("done", ephemeral=True)

    bot.tree.add_command(settings, guild=discord.Object(id=guild_id))

    async def setup_hook() -> None:
        await bot.tree.sync(guild=discord.Object(id=guild_id))

    bot.setup_hook = setup_hook
    bot.got = got  # type: ignore[attr-defined]
    return bot


async def test_subcommands_get_typed_options_and_resolved_objects(fake: FakeDiscord) -> None:
    other = fake.add_guild("Elsewhere", channels=("their-general",))
    their_role = fake.add_role(other.id, "Theirs")
    mods = fake.add_role(fake.guild.id, "Mods")
    gone = fake.add_channel(fake.guild.id, "old-news")
    fake.delete_channel(gone)
    thread = fake.add_thread(fake.channel, "a thread")
    bot = settings_bot(fake.guild.id)
    async with fake.running(bot):
        answers = [
            await fake.slash_command("settings channel open", {"channel": fake.channel}),
            await fake.slash_command("settings channel open", {"channel": other.channels["their-general"]}),
            await fake.slash_command("settings channel open", {"channel": gone}),
            await fake.slash_command("settings channel open", {"channel": thread}),
            await fake.slash_command("settings block", {"who": fake.bob, "days": 3}),
            await fake.slash_command("settings block", {"who": mods}),
            await fake.slash_command("settings role", {"role": their_role, "member": fake.bob}, user=fake.bob),
        ]
        await fake.wait_for(lambda: all(a.original and not a.original.loading for a in answers))
        with pytest.raises(AssertionError, match="is a group"):
            await fake.slash_command("settings channel")
        with pytest.raises(AssertionError, match="no subcommand 'shut'"):
            await fake.slash_command("settings channel shut", {"channel": fake.channel})
        with pytest.raises(AssertionError, match="needs the option"):
            await fake.slash_command("settings role", {"role": mods})

    here, foreign, deleted, in_thread, member, role, foreign_role = bot.got
    assert here[0] == "settings channel open" and here[1].name == "general" and here[2] is not None
    assert here[1].permissions.manage_guild  # alice, the owner, has every permission there
    assert foreign[1].name == "their-general" and foreign[2] is None  # not a channel of this server
    assert deleted[1].name == "old-news" and deleted[2] is None
    assert isinstance(in_thread[1], app_commands.AppCommandThread) and in_thread[1].parent_id == fake.channel
    assert member[0] == "settings block" and isinstance(member[1], discord.Member) and member[2] == 3
    assert member[1].id == int(fake.bob["id"]) and not member[1].guild_permissions.manage_guild
    assert isinstance(role[1], discord.Role) and role[1].id == mods
    assert foreign_role[1].id == their_role and foreign_role[3] is None and foreign_role[2].id == int(fake.bob["id"])

    data = answers[0].payload["data"]
    assert [(o["name"], o["type"]) for o in data["options"]] == [("channel", 2)]
    assert data["options"][0]["options"][0]["options"] == [{"name": "channel", "type": 7, "value": str(fake.channel)}]
    assert "permission_overwrites" not in data["resolved"]["channels"][str(fake.channel)]
    assert answers[0].name == "settings channel open" and answers[0].ephemeral
    assert answers[-1].deferred and answers[-1].ephemeral and answers[-1].original.content == "done"


class PersonaModal(discord.ui.Modal, title="Server persona"):
    persona = discord.ui.TextInput(label="Persona", style=discord.TextStyle.paragraph, max_length=50)
    note = discord.ui.Label(text="Why", component=discord.ui.TextInput(custom_id="why", required=False))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        why = self.note.component.value
        if why == "defer":
            await interaction.response.defer(ephemeral=True, thinking=True)
            await interaction.followup.send(f"later: {self.persona.value}", ephemeral=True)
        else:
            await interaction.response.send_message(f"persona: {self.persona.value} ({why})", ephemeral=True)


def modal_bot() -> commands.Bot:
    bot = make_bot()

    @bot.tree.command(name="persona", description="Set the persona")
    async def persona(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(PersonaModal())

    return bot


async def test_a_modal_is_recorded_and_its_submission_answered(fake: FakeDiscord) -> None:
    async with fake.running(modal_bot()):
        opened = await fake.slash_command("persona", user=fake.bob)
        await fake.wait_for(lambda: opened.modal)
        modal = opened.modal
        assert modal.title == "Server persona" and opened.response_type == 9 and opened.original is None
        inputs = modal.text_inputs
        assert [(i["label"], i.get("max_length")) for i in inputs.values()] == [("Persona", 50), ("Why", None)]
        persona_id = next(iter(inputs))

        with pytest.raises(AssertionError, match="required"):
            await fake.submit_modal(opened, {"why": "no persona"})
        with pytest.raises(AssertionError, match="51 characters"):
            await fake.submit_modal(opened, {persona_id: "x" * 51})

        submitted = await fake.submit_modal(opened, {persona_id: "a calm librarian", "why": "asked"})
        await fake.wait_for(lambda: submitted.original)
        assert submitted.kind == 5 and submitted.user_id == int(fake.bob["id"])
        assert submitted.original.content == "persona: a calm librarian (asked)" and submitted.ephemeral

        with pytest.raises(AssertionError, match="submitted already"):
            await fake.submit_modal(opened, {persona_id: "twice"})
        again = await fake.slash_command("persona")
        await fake.wait_for(lambda: again.modal)
        later = await fake.submit_modal(again, {next(iter(again.modal.text_inputs)): "a pirate", "why": "defer"})
        await fake.wait_for(lambda: later.original and not later.original.loading)
        assert later.deferred and later.ephemeral and later.original.content == "later: a pirate"
    assert fake.texts(fake.channel, include_ephemeral=True) == ["persona: a calm librarian (asked)", "later: a pirate"]
    assert fake.texts(fake.channel) == []


async def test_a_modal_discord_would_refuse_is_a_400(fake: FakeDiscord) -> None:
    bot = make_bot()
    errors: list[discord.HTTPException] = []

    @bot.tree.command(name="big", description="A modal over Discord's limits")
    async def big(interaction: discord.Interaction) -> None:
        modal = discord.ui.Modal(title="t" * 46)
        modal.add_item(discord.ui.TextInput(label="Text"))
        try:
            await interaction.response.send_modal(modal)
        except discord.HTTPException as exc:
            errors.append(exc)

    async with fake.running(bot):
        await fake.slash_command("big")
        await fake.wait_for(lambda: errors)
    assert errors[0].status == 400 and errors[0].code == 50035 and "title" in str(errors[0])


class RenameModal(discord.ui.Modal, title="Rename"):
    name = discord.ui.TextInput(label="New name", custom_id="name")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content=f"called {self.name.value}", view=None)


class RenameView(discord.ui.View):
    @discord.ui.button(label="Rename")
    async def rename(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.send_modal(RenameModal())


async def test_a_modal_opened_by_a_button_can_update_the_buttons_message(fake: FakeDiscord) -> None:
    bot = make_bot()

    @bot.tree.command(name="card", description="A card with a button")
    async def card(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("called nothing", view=RenameView(), ephemeral=True)

    async with fake.running(bot):
        command = await fake.slash_command("card")
        await fake.wait_for(lambda: command.original)
        click = await fake.click(command.original, "Rename")
        await fake.wait_for(lambda: click.modal)
        submitted = await fake.submit_modal(click, {"name": "Bolt"})
        await fake.wait_for(lambda: command.original.content == "called Bolt")
    assert submitted.payload["message"]["id"] == str(command.original.id) and submitted.callbacks[0]["type"] == 7
    assert command.original.data["components"] == [] and command.original.ephemeral
