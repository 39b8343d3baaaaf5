"""A small fake Discord API (REST + websocket gateway) for end-to-end tests with the real discord.py.

The fake is one aiohttp server on 127.0.0.1 (ephemeral port).  The real discord.py 2.7 client talks to it
once ``discord.http.Route.BASE`` is ``fake.api_base_url`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` is
``yarl.URL(fake.gateway_url)`` -- exactly what the bot's ``DISCORD_API_BASE_URL`` / ``DISCORD_GATEWAY_URL``
settings do.  ``async with FakeDiscord() as fake`` sets both class attributes on entry and restores the
previous values on exit (pass ``patch_discord=False`` to leave them alone).

Typical test::

    async with FakeDiscord() as fake:
        bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())
        async with fake.running(bot):                     # starts bot.start(token), waits for on_ready
            msg = await fake.user_message(fake.channel, f"<@{fake.bot_id}> hello")
            await fake.wait_for(lambda: fake.bot_messages(fake.channel))
            assert fake.texts(fake.channel) == ["..."]

World (created in ``__init__``; add more with ``add_guild`` / ``add_channel`` / ``add_user``):
  ``fake.bot_user`` (id ``fake.bot_id`` == ``fake.application_id``), users ``fake.alice`` and ``fake.bob``,
  ``fake.guild`` (a ``FakeGuild``) with text channels ``fake.channel`` ("general") and
  ``fake.readonly_channel`` (the bot may read but not send: a member overwrite denies SEND_MESSAGES and
  POST answers 403 / code 50013).  Guild number ``i`` (creation order) lives on shard ``i % shard_count``.
  DMs live on shard 0.  ``fake.dm_channel(user)`` is the user's DM channel id.  Every user is a member of
  every guild.  ``add_guild`` sends GUILD_CREATE and ``add_channel`` CHANNEL_CREATE to live bots: what a
  running bot must learn is announced to it (``_announce``: queued, and sent before any event dispatched
  afterwards, so a message in a new thread arrives after its THREAD_CREATE).

Servers (``guilds.py``):
  Owner and permissions: a guild's owner (``add_guild(owner=)``, default alice) has every permission; the
  others have @everyone's (``DEFAULT_PERMISSIONS``: no Manage Server, so bob and any ``add_user("carol")``
  are plain members) | their roles'.  ``PERM_ADMINISTRATOR`` implies all.  ``member_permissions(guild_id,
  user_id, channel_id=None)`` computes them as Discord does (in a channel: overwrites of @everyone, then
  of the roles, then of the member; a thread uses its parent's); every interaction's ``member.permissions``
  and ``app_permissions`` are computed so.  ``PERM_MANAGE_GUILD`` (1 << 5) and the others are exported.
  ``add_role(guild_id, name, permissions=0) -> role id`` (GUILD_ROLE_CREATE), ``give_role(user, guild_id,
  role_id)`` / ``take_role(...)`` (the member's ``roles`` in every member payload: messages,
  interactions, mentions, GUILD_CREATE; GUILD_MEMBER_UPDATE to live bots, which needs the Server Members
  intent, as on Discord).
  ``add_thread(parent_channel_id, name, owner=, private=False, archived=False) -> thread id``: a thread (type 11;
  12 when private) announced with THREAD_CREATE and in GUILD_CREATE's ``threads``; ``user_message(thread_id,
  ...)`` reaches discord.py with ``message.channel`` a ``discord.Thread`` (``archived=True``: a thread the bot has
  not cached, neither announced nor in GUILD_CREATE; a message in it comes in a ``PartialMessageable``). The bot's
  ``message.create_thread()`` (POST .../messages/{id}/threads: the thread takes the message's id; 160004 if it has
  one, 50024 in a thread) and ``channel.create_thread()`` (POST /channels/{id}/threads) make threads too, need
  Create Public / Private Threads, and the bot can post in them (Send Messages in Threads); messages in a thread
  are ``messages(thread_id)``.  ``delete_channel(channel_id)``: gone (REST 404 / 10003; CHANNEL_DELETE, or
  THREAD_DELETE for a thread; a channel's threads go with it); ``channel_payload(id)`` shows any channel, a
  deleted one as it was.  ``deny_send(thread_id)`` denies Send Messages in Threads in its parent;
  ``deny_bot(channel_id, permissions)`` denies the bot any of them there (``PERM_CREATE_PUBLIC_THREADS``, ...).

Injecting gateway events (each goes to the live connection of the owning shard; returns the payload):
  ``user_message(channel_id, content, author=, reply_to=, reply_ping=, webhook_id=, attachments=, **extra)``
  (``attachments=[{"filename": "a.py", "content": b"...", "content_type": "text/x-python"}]``: the bytes are
  served at the attachment's url, ``{cdn_base_url}/{id}/{filename}``, without auth, as Discord's CDN; script
  ``fail``/``delay`` on ``GET /attachments/...``; mentions are parsed from ``<@id>`` / ``<@!id>`` /
  ``<@&id>`` / ``@everyone`` in the content, a reply gets
  ``message_reference`` + ``referenced_message`` and pings the replied author), ``dm_message(user, content)``,
  ``edit_user_message(message_id, content)`` (MESSAGE_UPDATE), ``delete_message(message_id)``
  (MESSAGE_DELETE), ``slash_command(path, options, user=, channel_id=, dm=)`` (INTERACTION_CREATE type 2;
  returns a ``FakeInteraction``), ``click(message, label, user=)`` (a button press on one of the bot's messages:
  INTERACTION_CREATE type 3; its ``original`` is that message, which an UPDATE_MESSAGE callback (type 7) or a
  PATCH of @original edits), ``submit_modal(interaction, values, user=)`` (type 5: the text inputs of the
  modal the bot answered ``interaction`` with, by custom_id), and the raw ``dispatch(event, data,
  shard_id=None)``.
  Slash commands: ``path`` is the command, then its group and subcommand: ``slash_command("settings channel
  open", {"channel": channel_id})`` nests the options as Discord does.  Options are typed by the synced
  command's schema (an unknown subcommand or option, a missing required one, or naming a group: AssertionError);
  USER takes a user dict or id, CHANNEL a channel id (of any guild, or deleted: resolved from what it was), ROLE
  a role id (of any guild), MENTIONABLE either; ``data.resolved`` gets users and members (with permissions),
  channels (with the invoker's ``permissions`` there) and roles, as Discord fills it.
  Modals: a MODAL callback (type 9) is checked against Discord's limits (title <= 45, 1-5 rows or labels, ...:
  else 400 / 50035) and kept: ``FakeInteraction.modal`` (a ``FakeModal``: ``custom_id``, ``title``,
  ``components``, ``text_inputs``); a modal takes one submission.
  Without the MESSAGE_CONTENT intent, guild messages reach the bot with empty content unless they mention
  the bot or were sent by it (Discord's rule); guild/DM message events need GUILD_MESSAGES/DIRECT_MESSAGES.

Assertions:
  ``calls`` (every REST call: ``RestCall`` method, path (after /api/v10), query, json, files, time, status,
  response), ``calls_matching(method, pattern)``, ``unhandled`` (calls to routes the fake lacks),
  ``message(id)`` / ``messages(channel_id)`` / ``bot_messages(channel_id)`` / ``texts(channel_id)`` (FINAL
  state after edits: ``FakeMessage.content``, ``.versions``, ``.allowed_mentions``, ``.pings``, ``.deleted``),
  ``interaction(id_or_token)`` / ``interactions`` (``FakeInteraction.kind``, ``.callbacks``, ``.deferred``,
  ``.ephemeral``, ``.original``, ``.followups``, ``.modal``), ``commands[guild_id or None]`` (synced app commands),
  ``connections`` / ``identifies`` (gateway), ``typing`` (channel ids, one per POST .../typing),
  ``await wait_for(predicate, timeout=5)``, ``await wait_for_call(method, pattern, count=1)``.

Faults:
  ``rate_limit(method, pattern, times=1, retry_after=0.05)`` (429 with Retry-After + Via, JSON
  ``{"message","retry_after","global"}``), ``delay(method, pattern, seconds, times=1)`` (a slow answer: the
  call is held that long before it is handled; ``RestCall.status`` stays None meanwhile),
  ``fail(method, pattern, status, code=, message=, times=1)`` (4xx only: discord.py retries 5xx with sleeps of
  seconds), ``deny_send(channel_id)`` (403 / 50013),
  ``FakeDiscord(token="good")`` (any other token: 401 on REST -> ``discord.LoginFailure``; 4004 on IDENTIFY),
  ``close_on_identify(code, times=1)`` (e.g. 4014 -> ``discord.PrivilegedIntentsRequired``, 4004),
  ``FakeDiscord(privileged_intents={"message_content"})`` (a privileged intent the "developer portal" has
  not enabled -> 4014), ``FakeDiscord(rate_limits=DISCORD_LIKE_RATE_LIMITS)`` (fixed-window buckets with
  X-RateLimit-* headers, 429 when exceeded), ``interaction_ack_timeout`` (3 s rule: a late callback gets
  404 / 10062 Unknown interaction), ``reconnect(shard_id)`` (op 7 RECONNECT -> the client RESUMEs),
  ``hold_connections()`` / ``release_connections()`` (new gateway connections wait for their HELLO: gateway down).
  Pattern = a regex matched (fullmatch) against the path after /api/v10, e.g. r"/channels/\\d+/messages/\\d+".

Running a bot: ``fake.running(client, token=None, timeout=5, fast=True)`` (async context manager) or
``runner = await fake.start_bot(client)`` ... ``await runner.stop()``.  ``fast=True`` calls
``speed_up(client)``: guild_ready_timeout 2 s -> 0.05 s and no 5 s sleep between shard IDENTIFYs, which
makes ready take ~0.1 s instead of >= 2 s.  A bot built elsewhere can get the same by
``speed_up(client)`` before it starts, or ``guild_ready_timeout=0.05`` in its client options.

The parts (each a mixin over ``state.DiscordState``; ``server.FakeDiscord`` composes them, and no part imports
this façade): ``state`` (the world, the records, waiting and views), ``gateway`` (websocket, IDENTIFY/RESUME,
intents, dispatch, announcements), ``events`` (what users do), ``interactions`` (slash commands, clicks,
modals, callbacks, followups), ``command_options`` (subcommand paths, typed options, ``resolved``), ``guilds``
(roles, permissions, threads, channel deletion), ``bot_messages`` (what the bot posts: content rules, pings),
``rest`` (routes, middleware, handlers), ``ratelimits`` (scripted faults, 429 buckets), ``runner``
(``BotRunner``, ``speed_up``), ``wire`` (JSON answers and error bodies as discord.py reads them).

Wire details that matter to discord.py: JSON responses carry Content-Type exactly ``application/json``; the
fake never answers 5xx (handler bugs become 400 and are kept in ``internal_errors``); gateway frames are
plain JSON text whatever ``compress``/``encoding`` the client asks for.
"""

from tests.fakes.discord.gateway import GatewayConnection
from tests.fakes.discord.ratelimits import DISCORD_LIKE_RATE_LIMITS
from tests.fakes.discord.runner import BotRunner, speed_up
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import (
    ALL_PERMISSIONS,
    DEFAULT_PERMISSIONS,
    PERM_ADMINISTRATOR,
    PERM_CREATE_PUBLIC_THREADS,
    PERM_MANAGE_GUILD,
    PERM_SEND_MESSAGES_IN_THREADS,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    FakeModal,
    RestCall,
)

__all__ = [
    "ALL_PERMISSIONS",
    "DEFAULT_PERMISSIONS",
    "DISCORD_LIKE_RATE_LIMITS",
    "PERM_ADMINISTRATOR",
    "PERM_CREATE_PUBLIC_THREADS",
    "PERM_MANAGE_GUILD",
    "PERM_SEND_MESSAGES_IN_THREADS",
    "BotRunner",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeMessage",
    "FakeModal",
    "GatewayConnection",
    "RestCall",
    "speed_up",
]
