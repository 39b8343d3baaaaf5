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
  DMs live on shard 0.  ``fake.dm_channel(user)`` is the user's DM channel id.

Injecting gateway events (each goes to the live connection of the owning shard; returns the payload):
  ``user_message(channel_id, content, author=, reply_to=, reply_ping=, webhook_id=, attachments=, **extra)``
  (mentions are parsed from ``<@id>`` / ``<@!id>`` / ``<@&id>`` / ``@everyone`` in the content, a reply gets
  ``message_reference`` + ``referenced_message`` and pings the replied author), ``dm_message(user, content)``,
  ``edit_user_message(message_id, content)`` (MESSAGE_UPDATE), ``delete_message(message_id)``
  (MESSAGE_DELETE), ``slash_command(name, options, user=, channel_id=, dm=)`` (INTERACTION_CREATE type 2;
  returns a ``FakeInteraction``), and the raw ``dispatch(event, data, shard_id=None)``.
  Without the MESSAGE_CONTENT intent, guild messages reach the bot with empty content unless they mention
  the bot or were sent by it (Discord's rule); guild/DM message events need GUILD_MESSAGES/DIRECT_MESSAGES.

Assertions:
  ``calls`` (every REST call: ``RestCall`` method, path (after /api/v10), query, json, files, time, status,
  response), ``calls_matching(method, pattern)``, ``unhandled`` (calls to routes the fake lacks),
  ``message(id)`` / ``messages(channel_id)`` / ``bot_messages(channel_id)`` / ``texts(channel_id)`` (FINAL
  state after edits: ``FakeMessage.content``, ``.versions``, ``.allowed_mentions``, ``.pings``, ``.deleted``),
  ``interaction(id_or_token)`` / ``interactions`` (``FakeInteraction.callbacks``, ``.deferred``,
  ``.ephemeral``, ``.original``, ``.followups``), ``commands[guild_id or None]`` (synced app commands),
  ``connections`` / ``identifies`` (gateway), ``typing`` (channel ids, one per POST .../typing),
  ``await wait_for(predicate, timeout=5)``, ``await wait_for_call(method, pattern, count=1)``.

Faults:
  ``rate_limit(method, pattern, times=1, retry_after=0.05)`` (429 with Retry-After + Via, JSON
  ``{"message","retry_after","global"}``), ``delay(method, pattern, seconds, times=1)`` (a slow answer: the
  call is held that long before it is handled; ``RestCall.status`` stays None meanwhile),
  ``fail(method, pattern, status, code=, message=, times=1)`` (4xx only: discord.py retries 5xx with sleeps of seconds), ``deny_send(channel_id)`` (403 / 50013),
  ``FakeDiscord(token="good")`` (any other token: 401 on REST -> ``discord.LoginFailure``; 4004 on IDENTIFY),
  ``close_on_identify(code, times=1)`` (e.g. 4014 -> ``discord.PrivilegedIntentsRequired``, 4004),
  ``FakeDiscord(privileged_intents={"message_content"})`` (a privileged intent the "developer portal" has
  not enabled -> 4014), ``FakeDiscord(rate_limits=DISCORD_LIKE_RATE_LIMITS)`` (fixed-window buckets with
  X-RateLimit-* headers, 429 when exceeded), ``interaction_ack_timeout`` (3 s rule: a late callback gets
  404 / 10062 Unknown interaction), ``reconnect(shard_id)`` (op 7 RECONNECT -> the client RESUMEs).
  Pattern = a regex matched (fullmatch) against the path after /api/v10, e.g. r"/channels/\\d+/messages/\\d+".

Running a bot: ``fake.running(client, token=None, timeout=5, fast=True)`` (async context manager) or
``runner = await fake.start_bot(client)`` ... ``await runner.stop()``.  ``fast=True`` calls
``speed_up(client)``: guild_ready_timeout 2 s -> 0.05 s and no 5 s sleep between shard IDENTIFYs, which
makes ready take ~0.1 s instead of >= 2 s.  A bot built elsewhere can get the same by
``speed_up(client)`` before it starts, or ``guild_ready_timeout=0.05`` in its client options.

Wire details that matter to discord.py: JSON responses carry Content-Type exactly ``application/json``; the
fake never answers 5xx (handler bugs become 400 and are kept in ``internal_errors``); gateway frames are
plain JSON text whatever ``compress``/``encoding`` the client asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

__all__ = [
    "DISCORD_LIKE_RATE_LIMITS",
    "BotRunner",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeMessage",
    "GatewayConnection",
    "RestCall",
    "speed_up",
]

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000

# Intents (gateway bits) and permissions (bit numbers) the fake cares about.
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = {
    "members": INTENT_GUILD_MEMBERS,
    "presences": INTENT_GUILD_PRESENCES,
    "message_content": INTENT_MESSAGE_CONTENT,
}
PERM_SEND_MESSAGES = 1 << 11
DEFAULT_PERMISSIONS = (
    (1 << 6)  # add reactions
    | (1 << 10)  # view channel
    | PERM_SEND_MESSAGES
    | (1 << 14)  # embed links
    | (1 << 15)  # attach files
    | (1 << 16)  # read message history
    | (1 << 18)  # use external emojis
    | (1 << 31)  # use application commands
    | (1 << 38)  # send messages in threads
)
MESSAGE_FLAG_EPHEMERAL = 1 << 6
MESSAGE_FLAG_LOADING = 1 << 7

#: Approximations of Discord's per-route limits, for ``FakeDiscord(rate_limits=...)``.
#: Keys are "METHOD route-template"; the bucket is per major parameter (channel or webhook token).
DISCORD_LIKE_RATE_LIMITS: dict[str, tuple[int, float]] = {
    "POST /channels/{channel_id}/messages": (5, 5.0),
    "PATCH /channels/{channel_id}/messages/{message_id}": (5, 5.0),
    "PATCH /webhooks/{application_id}/{token}/messages/{message_id}": (5, 5.0),
    "POST /webhooks/{application_id}/{token}": (5, 5.0),
}


# ----------------------------------------------------------------------------------------------- records


@dataclass
class RestCall:
    """One REST request as the fake saw it (``path`` is relative to /api/v10)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[dict[str, Any]]
    time: float  # time.monotonic()
    status: int | None = None
    response: Any = None


@dataclass
class FakeMessage:
    """A message and its history; ``data`` is the current Discord payload."""

    data: dict[str, Any]
    versions: list[str] = field(default_factory=list)  # content at creation and after each edit
    allowed_mentions: list[dict[str, Any] | None] = field(default_factory=list)  # per create/edit call
    pings: set[str] = field(default_factory=set)  # "everyone", "here", "user:ID", "role:ID" (create+edits)
    deleted: bool = False
    interaction_id: int | None = None

    @property
    def id(self) -> int:
        return int(self.data["id"])

    @property
    def channel_id(self) -> int:
        return int(self.data["channel_id"])

    @property
    def content(self) -> str:
        return self.data.get("content") or ""

    @property
    def author_id(self) -> int:
        return int(self.data["author"]["id"])

    @property
    def flags(self) -> int:
        return int(self.data.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MESSAGE_FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & MESSAGE_FLAG_LOADING)

    @property
    def edits(self) -> int:
        return max(0, len(self.versions) - 1)


@dataclass
class FakeInteraction:
    """An injected application-command interaction and everything the bot did with it."""

    id: int
    token: str
    name: str
    channel_id: int
    guild_id: int | None
    user_id: int
    payload: dict[str, Any]
    created: float  # time.monotonic()
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # bodies of POST .../callback
    callback_times: list[float] = field(default_factory=list)
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    _fake: FakeDiscord | None = field(default=None, repr=False)

    @property
    def response_type(self) -> int | None:
        return self.callbacks[0].get("type") if self.callbacks else None

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def deferred(self) -> bool:
        return self.response_type == 5

    @property
    def ephemeral(self) -> bool:
        original = self.original
        return bool(original and original.ephemeral)

    @property
    def original(self) -> FakeMessage | None:
        return None if self.original_id is None else self._fake._messages.get(self.original_id)

    @property
    def followups(self) -> list[FakeMessage]:
        return [self._fake._messages[mid] for mid in self.followup_ids]

    @property
    def ack_latency(self) -> float | None:
        return self.callback_times[0] - self.created if self.callback_times else None


@dataclass
class FakeGuild:
    id: int
    name: str
    channels: dict[str, int]  # name -> channel id
    member_ids: list[int]
    joined_at: str


@dataclass
class _Session:
    session_id: str
    shard_id: int
    shard_count: int
    intents: int | None
    token: str
    seq: int = 0
    resumes: int = 0


@dataclass
class GatewayConnection:
    """One websocket connection; ``session`` is set after IDENTIFY (or RESUME)."""

    ws: web.WebSocketResponse
    query: dict[str, str]
    session: _Session | None = None
    identify: dict[str, Any] | None = None
    heartbeats: int = 0
    events: list[str] = field(default_factory=list)  # dispatch names sent, in order
    received_ops: list[int] = field(default_factory=list)
    closed: bool = False
    close_code: int | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def shard_id(self) -> int | None:
        return None if self.session is None else self.session.shard_id

    @property
    def intents(self) -> int | None:
        return None if self.session is None else self.session.intents

    async def send(self, payload: dict[str, Any]) -> bool:
        async with self._lock:
            if self.closed or self.ws.closed:
                return False
            if payload.get("op") == 0 and self.session is not None:
                self.session.seq += 1
                payload["s"] = self.session.seq
                self.events.append(payload["t"])
            try:
                await self.ws.send_str(json.dumps(payload))
            except (ConnectionError, RuntimeError):
                return False
            return True

    async def dispatch(self, event: str, data: Any) -> bool:
        return await self.send({"op": 0, "t": event, "d": data, "s": None})

    async def close(self, code: int, reason: str = "") -> None:
        self.close_code = code
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode())
        self.closed = True


@dataclass
class _Scripted:
    """Something done to the next ``times`` calls (None: all) matching method + path."""

    method: str
    pattern: re.Pattern[str]
    times: int | None
    hits: int = field(default=0, kw_only=True)

    def take(self, method: str, path: str) -> bool:
        """True if this call gets it (and it is counted)."""
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method not in ("*", method) or self.pattern.fullmatch(path) is None:
            return False
        self.hits += 1
        return True


@dataclass
class _Fault(_Scripted):
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class _Delay(_Scripted):
    seconds: float


# Per-request storage keys (web.RequestKey where aiohttp has it, to avoid NotAppKeyWarning).
_RequestKey = getattr(web, "RequestKey", None)
_BODY = _RequestKey("fake_body", object) if _RequestKey else "fake_body"
_CALL = _RequestKey("fake_call", object) if _RequestKey else "fake_call"
_BUCKET = _RequestKey("fake_bucket_headers", object) if _RequestKey else "fake_bucket_headers"


class _HttpError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors


# ------------------------------------------------------------------------------------------------- helpers


def _json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json": discord.py's json_or_text() compares the header verbatim.
    response = web.Response(status=status, body=json.dumps(data).encode())
    response.headers["Content-Type"] = "application/json"
    response.headers.update(headers or {})
    return response


def _error_body(code: int, message: str, errors: dict | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors:
        body["errors"] = errors
    return body


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _compile(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    return pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)


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

    async def stop(self, timeout: float = 5.0) -> None:
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


# ---------------------------------------------------------------------------------------------- the fake


class FakeDiscord:
    def __init__(
        self,
        *,
        token: str | None = None,
        privileged_intents: Iterable[str] | None = None,
        recommended_shards: int = 1,
        rate_limits: dict[str, tuple[int, float]] | None = None,
        interaction_ack_timeout: float = 3.0,
        echo_own_messages: bool = True,
        patch_discord: bool = True,
        bot_name: str = "Kortana",
    ) -> None:
        """
        token: the only token accepted (None: any non-empty token).
        privileged_intents: names enabled in the "developer portal" ("members", "presences",
            "message_content"); None = all.  IDENTIFY asking for another one is closed with 4014.
        recommended_shards: "shards" in GET /gateway/bot.
        rate_limits: {"METHOD /route/{template}": (limit, per_seconds)}; None = no rate limiting.
        echo_own_messages: send MESSAGE_CREATE/UPDATE for the bot's own messages, as Discord does.
        """
        self.token = token
        self.privileged_intents = set(PRIVILEGED_INTENTS) if privileged_intents is None else set(privileged_intents)
        unknown = self.privileged_intents - set(PRIVILEGED_INTENTS)
        if unknown:
            raise ValueError(f"unknown privileged intents: {sorted(unknown)}")
        self.recommended_shards = recommended_shards
        self.rate_limits = dict(rate_limits or {})
        self.interaction_ack_timeout = interaction_ack_timeout
        self.echo_own_messages = echo_own_messages
        self.patch_discord = patch_discord
        self.heartbeat_interval_ms = 41250

        # Logs for assertions
        self.calls: list[RestCall] = []
        self.unhandled: list[RestCall] = []
        self.internal_errors: list[str] = []
        self.connections: list[GatewayConnection] = []
        self.identifies: list[dict[str, Any]] = []
        self.typing: list[int] = []
        self.dropped_events: list[tuple[str, str]] = []  # (event, reason)
        self.interactions: list[FakeInteraction] = []
        self.commands: dict[int | None, list[dict[str, Any]]] = {}

        # World
        self._last_snowflake = 0
        self._users: dict[int, dict[str, Any]] = {}
        self._guilds: dict[int, FakeGuild] = {}
        self._channels: dict[int, dict[str, Any]] = {}
        self._dm_by_user: dict[int, int] = {}
        self._messages: dict[int, FakeMessage] = {}
        self._channel_messages: dict[int, list[int]] = {}
        self._sessions: dict[str, _Session] = {}
        self._faults: list[_Fault] = []
        self._delays: list[_Delay] = []
        self._identify_faults: list[int] = []
        self._buckets: dict[str, tuple[float, int]] = {}  # key -> (window end, used)
        self._guild_id_base = (int(time.time() * 1000) - DISCORD_EPOCH_MS) // 840 * 840
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

        self.bot_user = self._make_user(bot_name, bot=True)
        self.bot_id: int = int(self.bot_user["id"])
        self.application_id: int = self.bot_id
        self.alice = self.add_user("alice")
        self.bob = self.add_user("bob")
        self.guild = self.add_guild("Kortana Test", channels=("general", "read-only"), readonly=("read-only",))
        self.channel: int = self.guild.channels["general"]
        self.readonly_channel: int = self.guild.channels["read-only"]

        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._saved: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._ws_handler)
        self._add_routes(app.router)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        if self.patch_discord:
            import discord.gateway
            import discord.http
            import yarl

            self._saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
            discord.http.Route.BASE = self.api_base_url
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in self.connections:
            if not conn.closed:
                await conn.close(1001, "fake shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._saved is not None:
            import discord.gateway
            import discord.http

            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved
            self._saved = None

    async def start_bot(
        self, client: Any, token: str | None = None, *, timeout: float = 5.0, fast: bool = True
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
        self, client: Any, token: str | None = None, *, timeout: float = 5.0, fast: bool = True
    ) -> AsyncIterator[BotRunner]:
        runner = await self.start_bot(client, token, timeout=timeout, fast=fast)
        try:
            yield runner
        finally:
            await runner.stop()

    # ------------------------------------------------------------------------------------ world setup

    def _snowflake(self) -> int:
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_snowflake = max(self._last_snowflake + 1, now)
        return self._last_snowflake

    def _make_user(self, name: str, *, bot: bool = False, id: int | None = None) -> dict[str, Any]:
        user = {
            "id": str(id or self._snowflake()),
            "username": name,
            "global_name": None if bot else name.capitalize(),
            "discriminator": "0",
            "avatar": None,
            "public_flags": 0,
        }
        if bot:
            user["bot"] = True
        self._users[int(user["id"])] = user
        return user

    def add_user(self, name: str, *, bot: bool = False, id: int | None = None) -> dict[str, Any]:
        """A user; a member of every guild (existing and future)."""
        user = self._make_user(name, bot=bot, id=id)
        for guild in self._guilds.values():
            guild.member_ids.append(int(user["id"]))
        return user

    def user(self, user_id: int) -> dict[str, Any]:
        return self._users[int(user_id)]

    def add_guild(
        self,
        name: str,
        *,
        channels: Iterable[str] = ("general",),
        readonly: Iterable[str] = (),
        id: int | None = None,
    ) -> FakeGuild:
        """A guild with text channels; the bot cannot send in the ``readonly`` ones.

        If bots are connected, the owning shard receives GUILD_CREATE (the bot "joins" it).
        """
        guild_id = id or (((self._guild_id_base + len(self._guilds)) << 22) | 0x3FFFFF)
        humans = [uid for uid in self._users if uid != getattr(self, "bot_id", None)]
        guild = FakeGuild(guild_id, name, {}, humans, _now_iso())
        self._guilds[guild_id] = guild
        readonly = set(readonly)
        for channel_name in channels:
            self.add_channel(guild_id, channel_name, can_send=channel_name not in readonly)
        if self.connections:
            self._spawn(self.dispatch("GUILD_CREATE", self._guild_payload(guild)))
        return guild

    def add_channel(self, guild_id: int, name: str, *, can_send: bool = True) -> int:
        guild = self._guilds[guild_id]
        channel_id = self._snowflake()
        self._channels[channel_id] = {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(guild_id),
            "name": name,
            "position": len(guild.channels),
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        guild.channels[name] = channel_id
        self._channel_messages[channel_id] = []
        if not can_send:
            self._set_deny(channel_id, PERM_SEND_MESSAGES)
        return channel_id

    def _set_deny(self, channel_id: int, deny: int) -> None:
        channel = self._channels[channel_id]
        channel["permission_overwrites"] = [
            o for o in channel["permission_overwrites"] if o["id"] != str(self.bot_id)
        ] + [{"id": str(self.bot_id), "type": 1, "allow": "0", "deny": str(deny)}]

    def deny_send(self, channel_id: int) -> None:
        """From now on the bot may not send in this channel (403 / 50013); live bots get CHANNEL_UPDATE."""
        self._set_deny(channel_id, PERM_SEND_MESSAGES)
        if self.connections:
            self._spawn(self.dispatch("CHANNEL_UPDATE", self._channels[channel_id]))

    def can_send(self, channel_id: int) -> bool:
        channel = self._channels[channel_id]
        if channel["type"] == 1:
            return True
        return not any(
            o["id"] == str(self.bot_id) and int(o["deny"]) & PERM_SEND_MESSAGES
            for o in channel["permission_overwrites"]
        )

    def dm_channel(self, user: dict[str, Any] | int) -> int:
        """The DM channel between the bot and ``user`` (created on first use)."""
        user_id = int(user["id"]) if isinstance(user, dict) else int(user)
        if user_id not in self._dm_by_user:
            channel_id = self._snowflake()
            self._channels[channel_id] = {
                "id": str(channel_id),
                "type": 1,
                "recipients": [self._users[user_id]],
                "last_message_id": None,
                "flags": 0,
            }
            self._dm_by_user[user_id] = channel_id
            self._channel_messages[channel_id] = []
        return self._dm_by_user[user_id]

    def shard_for(self, guild_id: int | None, shard_count: int) -> int:
        return 0 if guild_id is None else (int(guild_id) >> 22) % shard_count

    def _member_payload(self, guild: FakeGuild, user_id: int) -> dict[str, Any]:
        return {
            "user": self._users[user_id],
            "roles": [],
            "joined_at": guild.joined_at,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
        }

    def _guild_payload(self, guild: FakeGuild) -> dict[str, Any]:
        members = [self._member_payload(guild, uid) for uid in [self.bot_id, *guild.member_ids] if uid in self._users]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "owner_id": str(int(self.alice["id"])),
            "joined_at": guild.joined_at,
            "large": False,
            "member_count": len(members),
            "roles": [
                {
                    "id": str(guild.id),
                    "name": "@everyone",
                    "permissions": str(DEFAULT_PERMISSIONS),
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "channels": [dict(self._channels[cid]) for cid in guild.channels.values()],
            "members": members,
            "features": [],
            "emojis": [],
            "stickers": [],
            "voice_states": [],
            "presences": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "afk_timeout": 300,
        }

    # ------------------------------------------------------------------------------- waiting & views

    def _notify(self) -> None:
        self._changed.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every fake event and every 20 ms)."""
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what or predicate!r}; REST calls: {self._summary()}"
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.02))

    def calls_matching(self, method: str = "*", pattern: str | re.Pattern[str] = ".*") -> list[RestCall]:
        regex = _compile(pattern)
        return [c for c in self.calls if method in ("*", c.method) and regex.fullmatch(c.path)]

    async def wait_for_call(
        self, method: str, pattern: str | re.Pattern[str], count: int = 1, timeout: float = 5.0
    ) -> list[RestCall]:
        """Wait until ``count`` answered calls match; returns all matching calls."""

        def done() -> list[RestCall] | None:
            calls = [c for c in self.calls_matching(method, pattern) if c.status is not None]
            return calls if len(calls) >= count else None

        return await self.wait_for(done, timeout, what=f"{count} x {method} {pattern}")

    def _summary(self, last: int = 15) -> str:
        return ", ".join(f"{c.method} {c.path} -> {c.status}" for c in self.calls[-last:]) or "none"

    def message(self, message_id: int) -> FakeMessage:
        return self._messages[int(message_id)]

    def messages(
        self, channel_id: int, *, include_deleted: bool = False, include_ephemeral: bool = False
    ) -> list[FakeMessage]:
        """Messages in a channel, oldest first, in their final state."""
        out = []
        for mid in self._channel_messages.get(int(channel_id), []):
            msg = self._messages[mid]
            if (msg.deleted and not include_deleted) or (msg.ephemeral and not include_ephemeral):
                continue
            out.append(msg)
        return out

    def bot_messages(self, channel_id: int, **kwargs: bool) -> list[FakeMessage]:
        return [m for m in self.messages(channel_id, **kwargs) if m.author_id == self.bot_id]

    def texts(self, channel_id: int, **kwargs: bool) -> list[str]:
        """Final contents of the bot's messages in a channel."""
        return [m.content for m in self.bot_messages(channel_id, **kwargs)]

    def interaction(self, key: int | str) -> FakeInteraction:
        for inter in self.interactions:
            if inter.id == key or inter.token == key or str(inter.id) == str(key):
                return inter
        raise KeyError(key)

    def live_connection(self, shard_id: int = 0) -> GatewayConnection | None:
        for conn in reversed(self.connections):
            if conn.session is not None and not conn.closed and conn.shard_id == shard_id:
                return conn
        return None

    # --------------------------------------------------------------------------------------- faults

    def fail(
        self,
        method: str,
        pattern: str | re.Pattern[str],
        status: int,
        *,
        code: int = 0,
        message: str | None = None,
        times: int | None = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> _Fault:
        """Answer the next ``times`` calls (None: all) matching method+path with an error."""
        if status >= 500:
            raise ValueError("discord.py retries 5xx with sleeps of 1+3+5+7+9 s; script a 4xx instead")
        fault = _Fault(
            method.upper(),
            _compile(pattern),
            times,
            status,
            body if body is not None else _error_body(code, message or f"{status}: scripted failure"),
            dict(headers or {}),
        )
        self._faults.append(fault)
        return fault

    def rate_limit(
        self,
        method: str,
        pattern: str | re.Pattern[str],
        *,
        times: int | None = 1,
        retry_after: float = 0.05,
        is_global: bool = False,
    ) -> _Fault:
        """429 on the next ``times`` matching calls, the way Discord sends it (discord.py sleeps, retries)."""
        headers = {
            "Retry-After": str(retry_after),
            "Via": "1.1 google",
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": str(retry_after),
            "X-RateLimit-Scope": "shared" if not is_global else "global",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        return self.fail(method, pattern, 429, times=times, headers=headers, body=body)

    def delay(
        self, method: str, pattern: str | re.Pattern[str], seconds: float, *, times: int | None = 1
    ) -> _Delay:
        """Hold the next ``times`` calls (None: all) matching method+path for ``seconds`` before handling them."""
        delay = _Delay(method.upper(), _compile(pattern), times, seconds)
        self._delays.append(delay)
        return delay

    def close_on_identify(self, code: int, times: int = 1) -> None:
        """Close the next ``times`` IDENTIFYs with this close code (4004 auth failed, 4014 intents...)."""
        self._identify_faults.extend([code] * times)

    async def reconnect(self, shard_id: int = 0) -> None:
        """Send op 7 RECONNECT on the shard's live connection; the client closes it and RESUMEs."""
        conn = self.live_connection(shard_id)
        if conn is None:
            raise AssertionError(f"no live gateway connection for shard {shard_id}")
        await conn.send({"op": 7, "d": None})

    # -------------------------------------------------------------------------------------- gateway

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        conn = GatewayConnection(ws=ws, query=dict(request.query))
        self.connections.append(conn)
        await conn.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None})
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    try:
                        await self._on_gateway_payload(conn, json.loads(msg.data))
                    except Exception:  # noqa: BLE001 - a fake bug must show up in the test, not kill the socket
                        self.internal_errors.append(traceback.format_exc())
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            conn.closed = True
            if conn.close_code is None:
                conn.close_code = ws.close_code
            self._notify()
        return ws

    async def _on_gateway_payload(self, conn: GatewayConnection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        conn.received_ops.append(op)
        if op == 1:  # HEARTBEAT
            conn.heartbeats += 1
            await conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, data)
        elif op == 6:
            await self._resume(conn, data)
        elif op == 8:
            await self._request_members(conn, data)
        self._notify()

    def _token_ok(self, token: str | None) -> bool:
        if not token:
            return False
        return self.token is None or token == self.token

    async def _identify(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        conn.identify = data
        self.identifies.append(data)
        shard_id, shard_count = data.get("shard") or [0, 1]
        intents = data.get("intents")
        if self._identify_faults:
            await conn.close(self._identify_faults.pop(0), "scripted close")
            return
        if not self._token_ok(data.get("token")):
            await conn.close(4004, "Authentication failed.")
            return
        if intents is not None:
            for name, bit in PRIVILEGED_INTENTS.items():
                if intents & bit and name not in self.privileged_intents:
                    await conn.close(4014, "Disallowed intent(s).")
                    return
        if not 0 <= shard_id < shard_count:
            await conn.close(4010, "Invalid shard.")
            return
        session = _Session(secrets.token_hex(16), shard_id, shard_count, intents, data["token"])
        self._sessions[session.session_id] = session
        conn.session = session
        guilds = [g for g in self._guilds.values() if self.shard_for(g.id, shard_count) == shard_id]
        await conn.dispatch(
            "READY",
            {
                "v": 10,
                "user": {**self.bot_user, "verified": True, "mfa_enabled": False, "flags": 0},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.session_id,
                "session_type": "normal",
                "resume_gateway_url": self.gateway_url,
                "shard": [shard_id, shard_count],
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "geo_ordered_rtc_regions": [],
                "guild_join_requests": [],
                "user_settings": {},
                "auth": {},
            },
        )
        for guild in guilds:
            await conn.dispatch("GUILD_CREATE", {**self._guild_payload(guild), "unavailable": False})

    async def _resume(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        session = self._sessions.get(data.get("session_id") or "")
        if session is None or data.get("token") != session.token:
            await conn.send({"op": 9, "d": False, "s": None, "t": None})
            return
        for other in self.connections:
            if other is not conn and other.session is session:
                other.session = None  # the old socket no longer owns the session
        session.resumes += 1
        conn.session = session
        await conn.dispatch("RESUMED", {})

    async def _request_members(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        guild = self._guilds.get(int(data["guild_id"]))
        members = [] if guild is None else [self._member_payload(guild, uid) for uid in [self.bot_id, *guild.member_ids]]
        await conn.dispatch(
            "GUILD_MEMBERS_CHUNK",
            {
                "guild_id": data["guild_id"],
                "members": members,
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
                "nonce": data.get("nonce"),
            },
        )

    def _event_intent(self, event: str, data: dict[str, Any]) -> int:
        if event.startswith("MESSAGE_"):
            return INTENT_GUILD_MESSAGES if data.get("guild_id") else INTENT_DIRECT_MESSAGES
        return 0

    def _visible_payload(self, conn: GatewayConnection, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Apply the Message Content intent rule to a message payload for this connection."""
        if event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE") or conn.intents is None:
            return data
        if conn.intents & INTENT_MESSAGE_CONTENT or not data.get("guild_id"):
            return data
        visible = self._content_visible(data)
        replied = data.get("referenced_message")
        if replied and not self._content_visible(replied):
            data = {**data, "referenced_message": self._without_content(replied)}
        return data if visible else self._without_content(data)

    def _content_visible(self, data: dict[str, Any]) -> bool:
        """Discord's rule without the intent: the bot sees the text of its own messages and of those that
        mention it (a reply with the ping off does not mention the replied author)."""
        author_is_bot = data.get("author", {}).get("id") == str(self.bot_id)
        return author_is_bot or any(m.get("id") == str(self.bot_id) for m in data.get("mentions", []))

    @staticmethod
    def _without_content(data: dict[str, Any]) -> dict[str, Any]:
        hidden = {**data, "content": "", "embeds": [], "attachments": [], "components": []}
        hidden.pop("poll", None)
        return hidden

    async def dispatch(self, event: str, data: dict[str, Any], shard_id: int | None = None) -> bool:
        """Send a DISPATCH event to the live connection that owns it; False if it was dropped."""
        candidates = [c for c in self.connections if c.session is not None and not c.closed]
        if not candidates:
            self.dropped_events.append((event, "no live gateway connection"))
            return False
        if shard_id is None:
            guild_id = data.get("guild_id") or (data.get("id") if event.startswith("GUILD_") else None)
            shard_id = self.shard_for(int(guild_id) if guild_id else None, candidates[-1].session.shard_count)
        conn = self.live_connection(shard_id)
        if conn is None:
            self.dropped_events.append((event, f"no live connection for shard {shard_id}"))
            return False
        needed = self._event_intent(event, data)
        if needed and conn.intents is not None and not conn.intents & needed:
            self.dropped_events.append((event, f"intent {needed} not requested"))
            return False
        ok = await conn.dispatch(event, self._visible_payload(conn, event, data))
        self._notify()
        return ok

    # ------------------------------------------------------------------------------ event builders

    def _mentions(self, content: str, guild_id: int | None) -> tuple[list[dict], list[str], bool]:
        ids = list(dict.fromkeys(int(x) for x in re.findall(r"<@!?(\d+)>", content)))
        users = []
        for uid in ids:
            if uid not in self._users:
                continue
            entry = dict(self._users[uid])
            if guild_id is not None:
                member = self._member_payload(self._guilds[guild_id], uid)
                member.pop("user")
                entry["member"] = member
            users.append(entry)
        roles = list(dict.fromkeys(re.findall(r"<@&(\d+)>", content)))
        return users, roles, "@everyone" in content or "@here" in content

    def _message_payload(
        self,
        channel_id: int,
        author: dict[str, Any],
        content: str,
        *,
        reply_to: int | None = None,
        reply_ping: bool = True,
        webhook_id: int | None = None,
        mentions_from_content: bool = True,
    ) -> dict[str, Any]:
        channel = self._channels[channel_id]
        guild_id = int(channel["guild_id"]) if channel.get("guild_id") else None
        mentions, roles, everyone = self._mentions(content, guild_id) if mentions_from_content else ([], [], False)
        data: dict[str, Any] = {
            "id": str(self._snowflake()),
            "channel_id": str(channel_id),
            "type": 0,
            "content": content,
            "author": author,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": everyone,
            "mentions": mentions,
            "mention_roles": roles,
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "flags": 0,
        }
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
            if webhook_id is None and int(author["id"]) in self._users:
                member = self._member_payload(self._guilds[guild_id], int(author["id"]))
                member.pop("user")
                data["member"] = member
        if webhook_id is not None:
            data["webhook_id"] = str(webhook_id)
        if reply_to is not None:
            ref = self._messages[int(reply_to)]
            data["type"] = 19
            data["message_reference"] = {
                "type": 0,
                "message_id": str(ref.id),
                "channel_id": str(ref.channel_id),
                **({"guild_id": str(guild_id)} if guild_id else {}),
            }
            data["referenced_message"] = dict(ref.data)
            if reply_ping and all(m["id"] != ref.data["author"]["id"] for m in data["mentions"]):
                data["mentions"].append(dict(ref.data["author"]))
        return data

    def _store(self, data: dict[str, Any], allowed: dict[str, Any] | None = None, **kw: Any) -> FakeMessage:
        msg = FakeMessage(data=data, versions=[data.get("content") or ""], allowed_mentions=[allowed], **kw)
        self._messages[msg.id] = msg
        self._channel_messages.setdefault(msg.channel_id, []).append(msg.id)
        channel = self._channels.get(msg.channel_id)
        if channel is not None:
            channel["last_message_id"] = str(msg.id)
        return msg

    async def user_message(
        self,
        channel_id: int,
        content: str,
        *,
        author: dict[str, Any] | None = None,
        reply_to: int | None = None,
        reply_ping: bool = True,
        webhook_id: int | None = None,
        attachments: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Post a message as a user (default alice) and send MESSAGE_CREATE; returns the payload.

        ``webhook_id``: posted by a webhook (author is a bot user named after it).
        ``attachments``: e.g. [{"filename": "a.png", "size": 10}] (ids/urls are filled in).
        """
        if webhook_id is not None and author is None:
            author = {"id": str(webhook_id), "username": "Captain Hook", "discriminator": "0000", "avatar": None, "bot": True}
        author = author or self.alice
        data = self._message_payload(
            int(channel_id), author, content, reply_to=reply_to, reply_ping=reply_ping, webhook_id=webhook_id
        )
        for attachment in attachments or []:
            aid = self._snowflake()
            data["attachments"].append(
                {
                    "id": str(aid),
                    "filename": "file.bin",
                    "size": 0,
                    "url": f"https://cdn.example.invalid/{aid}",
                    "proxy_url": f"https://cdn.example.invalid/{aid}",
                    **attachment,
                }
            )
        data.update(extra)
        self._store(data)
        await self.dispatch("MESSAGE_CREATE", data)
        return data

    async def dm_message(self, user: dict[str, Any], content: str, **kwargs: Any) -> dict[str, Any]:
        return await self.user_message(self.dm_channel(user), content, author=user, **kwargs)

    async def edit_user_message(self, message_id: int, content: str) -> dict[str, Any]:
        """Edit a stored message (as its author) and send MESSAGE_UPDATE."""
        msg = self._messages[int(message_id)]
        guild_id = int(msg.data["guild_id"]) if msg.data.get("guild_id") else None
        mentions, roles, everyone = self._mentions(content, guild_id)
        msg.data.update(
            content=content,
            edited_timestamp=_now_iso(),
            mentions=mentions,
            mention_roles=roles,
            mention_everyone=everyone,
        )
        msg.versions.append(content)
        await self.dispatch("MESSAGE_UPDATE", dict(msg.data))
        return msg.data

    async def delete_message(self, message_id: int) -> None:
        """Delete a stored message and send MESSAGE_DELETE."""
        msg = self._messages[int(message_id)]
        msg.deleted = True
        data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
        if msg.data.get("guild_id"):
            data["guild_id"] = msg.data["guild_id"]
        await self.dispatch("MESSAGE_DELETE", data)

    @staticmethod
    def _option(name: str, value: Any) -> dict[str, Any]:
        if isinstance(value, bool):
            kind = 5
        elif isinstance(value, int):
            kind = 4
        elif isinstance(value, float):
            kind = 10
        else:
            kind = 3
        return {"name": name, "type": kind, "value": value}

    async def slash_command(
        self,
        name: str,
        options: dict[str, Any] | list[dict[str, Any]] | None = None,
        *,
        user: dict[str, Any] | None = None,
        channel_id: int | None = None,
        dm: bool = False,
        resolved: dict[str, Any] | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Invoke an application (slash) command: INTERACTION_CREATE type 2.

        ``options``: {"question": "hi"} (types inferred: str 3, int 4, bool 5, float 10) or raw option dicts.
        ``channel_id`` defaults to ``fake.channel``; ``dm=True`` invokes it in the user's DM.
        The command id (and data.guild_id for guild-synced commands) come from the synced commands.
        """
        user = user or self.alice
        if dm:
            channel_id = self.dm_channel(user)
        channel_id = int(channel_id or self.channel)
        channel = self._channels[channel_id]
        guild_id = int(channel["guild_id"]) if channel.get("guild_id") else None
        if isinstance(options, dict):
            options = [self._option(k, v) for k, v in options.items()]
        command = next(
            (c for c in self.commands.get(guild_id, []) if c["name"] == name),
            None,
        ) or next((c for c in self.commands.get(None, []) if c["name"] == name), None)
        data: dict[str, Any] = {
            "id": command["id"] if command else str(self._snowflake()),
            "name": name,
            "type": 1,
            "options": options or [],
        }
        if command and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        if resolved:
            data["resolved"] = resolved
        interaction_id = self._snowflake()
        token = "interaction-" + secrets.token_urlsafe(24)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": 2,
            "token": token,
            "version": 1,
            "data": data,
            "channel_id": str(channel_id),
            "channel": dict(channel),
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
            "app_permissions": str(
                DEFAULT_PERMISSIONS & ~(0 if self.can_send(channel_id) else PERM_SEND_MESSAGES)
            ),
        }
        if guild_id is not None:
            member = self._member_payload(self._guilds[guild_id], int(user["id"]))
            member["permissions"] = str(DEFAULT_PERMISSIONS)
            payload.update(
                guild_id=str(guild_id),
                member=member,
                guild_locale="en-US",
                guild={"id": str(guild_id), "locale": "en-US", "features": []},
                context=0,
                authorizing_integration_owners={"0": str(guild_id)},
            )
        else:
            payload.update(user=user, context=1, authorizing_integration_owners={"1": str(user["id"])})
        inter = FakeInteraction(
            id=interaction_id,
            token=token,
            name=name,
            channel_id=channel_id,
            guild_id=guild_id,
            user_id=int(user["id"]),
            payload=payload,
            created=time.monotonic(),
            _fake=self,
        )
        self.interactions.append(inter)
        await self.dispatch("INTERACTION_CREATE", payload)
        return inter

    # ----------------------------------------------------------------------------------------- REST

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        p = API_PREFIX
        routes = [
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway_bot),
            ("GET", "/users/{user_id}", self._get_user),
            ("POST", "/users/@me/channels", self._create_dm),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/@me", self._get_application),
            ("GET", "/applications/{application_id}/commands", self._get_commands),
            ("PUT", "/applications/{application_id}/commands", self._put_commands),
            ("POST", "/applications/{application_id}/commands", self._post_command),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._get_commands),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self._post_command),
            ("GET", "/guilds/{guild_id}", self._get_guild),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("GET", "/channels/{channel_id}/messages", self._get_messages),
            ("POST", "/channels/{channel_id}/messages", self._post_message),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._patch_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message),
            ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self._no_content),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self._no_content),
            ("POST", "/channels/{channel_id}/typing", self._typing),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._interaction_callback),
            ("POST", "/webhooks/{application_id}/{token}", self._followup),
            ("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", self._webhook_get),
            ("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", self._webhook_edit),
            ("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", self._webhook_delete),
        ]
        for method, path, handler in routes:
            router.add_route(method, p + path, handler)
        router.add_route("*", "/{tail:.*}", self._not_found)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path == "/gateway":
            return await handler(request)
        path = request.path[len(API_PREFIX):] if request.path.startswith(API_PREFIX) else request.path
        body, files = await self._read_body(request)
        call = RestCall(request.method, path, dict(request.query), body, files, time.monotonic())
        self.calls.append(call)
        request[_BODY] = body
        request[_CALL] = call
        for delay in self._delays:
            if delay.take(request.method, path):
                await asyncio.sleep(delay.seconds)
        try:
            response = self._scripted(request.method, path)
            if response is None:
                response = self._check_auth(request, path) or self._check_rate_limit(request, call)
            if response is None:
                response = await handler(request)
                bucket_headers = request.get(_BUCKET)
                if bucket_headers:
                    response.headers.update(bucket_headers)
        except _HttpError as exc:
            response = _json_response(_error_body(exc.code, exc.message, exc.errors), status=exc.status)
        except Exception:  # noqa: BLE001 - never answer 5xx: discord.py would sleep and retry
            self.internal_errors.append(traceback.format_exc())
            response = _json_response(_error_body(0, "fake internal error (see fake.internal_errors)"), status=400)
        call.status = response.status
        if isinstance(response, web.Response) and response.body:
            with contextlib.suppress(Exception):
                call.response = json.loads(response.body)
        self._notify()
        return response

    async def _read_body(self, request: web.Request) -> tuple[Any, list[dict[str, Any]]]:
        if not request.body_exists:
            return None, []
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            payload, files = None, []
            reader = await request.multipart()
            async for part in reader:
                raw = await part.read()
                if part.name == "payload_json":
                    payload = json.loads(raw)
                else:
                    files.append({"name": part.name, "filename": part.filename, "size": len(raw), "data": bytes(raw)})
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            return raw.decode("utf-8", "replace"), []

    def _scripted(self, method: str, path: str) -> web.Response | None:
        for fault in self._faults:
            if fault.take(method, path):
                return _json_response(fault.body, status=fault.status, headers=fault.headers)
        return None

    def _check_auth(self, request: web.Request, path: str) -> web.Response | None:
        if path.startswith(("/webhooks/", "/interactions/")):
            return None  # token-in-URL routes need no Authorization header
        auth = request.headers.get("Authorization", "")
        token = auth[4:] if auth.startswith("Bot ") else ""
        if self._token_ok(token):
            return None
        return _json_response(_error_body(0, "401: Unauthorized"), status=401)

    def _check_rate_limit(self, request: web.Request, call: RestCall) -> web.Response | None:
        if not self.rate_limits or request.match_info.route.resource is None:
            return None
        template = request.match_info.route.resource.canonical[len(API_PREFIX):]
        limit = self.rate_limits.get(f"{request.method} {template}")
        if limit is None:
            return None
        count, per = limit
        info = request.match_info
        major = info.get("channel_id") or info.get("token") or info.get("guild_id") or ""
        key = f"{request.method} {template} {major}"
        now = time.monotonic()
        window_end, used = self._buckets.get(key, (0.0, 0))
        if now >= window_end:
            window_end, used = now + per, 0
        reset_after = max(window_end - now, 0.001)
        headers = {
            "X-RateLimit-Limit": str(count),
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Bucket": f"fake-{abs(hash(request.method + template)):x}",
        }
        if used >= count:
            headers.update({"X-RateLimit-Remaining": "0", "Retry-After": f"{reset_after:.3f}", "Via": "1.1 google"})
            body = {"message": "You are being rate limited.", "retry_after": reset_after, "global": False}
            return _json_response(body, status=429, headers=headers)
        used += 1
        self._buckets[key] = (window_end, used)
        headers["X-RateLimit-Remaining"] = str(count - used)
        request[_BUCKET] = headers
        return None

    async def _not_found(self, request: web.Request) -> web.Response:
        self.unhandled.append(request[_CALL])
        return _json_response(_error_body(0, "404: Not Found"), status=404)

    async def _no_content(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    # ---- lookups

    def _channel_or_404(self, channel_id: Any) -> dict[str, Any]:
        channel = self._channels.get(int(channel_id))
        if channel is None:
            raise _HttpError(404, 10003, "Unknown Channel")
        return channel

    def _message_or_404(self, message_id: Any, channel_id: Any = None) -> FakeMessage:
        msg = self._messages.get(int(message_id)) if str(message_id).isdigit() else None
        if msg is None or msg.deleted or (channel_id is not None and msg.channel_id != int(channel_id)):
            raise _HttpError(404, 10008, "Unknown Message")
        return msg

    def _check_app(self, request: web.Request) -> None:
        if request.match_info.get("application_id") != str(self.application_id):
            raise _HttpError(404, 10002, "Unknown Application")

    # ---- gateway / identity

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return _json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        return _json_response(
            {
                "url": self.gateway_url,
                "shards": self.recommended_shards,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
            }
        )

    async def _get_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        if user_id == "@me":
            return _json_response({**self.bot_user, "verified": True, "mfa_enabled": False, "flags": 0})
        user = self._users.get(int(user_id)) if user_id.isdigit() else None
        if user is None:
            raise _HttpError(404, 10013, "Unknown User")
        return _json_response(user)

    async def _get_application(self, request: web.Request) -> web.Response:
        return _json_response(
            {
                "id": str(self.application_id),
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot": self.bot_user,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": self.alice,
                "team": None,
                "flags": 0,
                "rpc_origins": [],
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "tags": [],
            }
        )

    async def _create_dm(self, request: web.Request) -> web.Response:
        recipient = int(request[_BODY]["recipient_id"])
        if recipient not in self._users:
            raise _HttpError(400, 50007, "Cannot send messages to this user")
        return _json_response(self._channels[self.dm_channel(recipient)])

    # ---- application commands

    def _command_out(self, raw: dict[str, Any], guild_id: int | None, existing: list[dict]) -> dict[str, Any]:
        kind = raw.get("type", 1)
        old = next((c for c in existing if c["name"] == raw["name"] and c["type"] == kind), None)
        out = {
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            **raw,
            "id": old["id"] if old else str(self._snowflake()),
            "application_id": str(self.application_id),
            "type": kind,
            "version": str(self._snowflake()),
        }
        if guild_id is not None:
            out["guild_id"] = str(guild_id)
        return out

    @staticmethod
    def _guild_key(request: web.Request) -> int | None:
        guild_id = request.match_info.get("guild_id")
        return int(guild_id) if guild_id else None

    async def _get_commands(self, request: web.Request) -> web.Response:
        self._check_app(request)
        return _json_response(self.commands.get(self._guild_key(request), []))

    async def _put_commands(self, request: web.Request) -> web.Response:
        self._check_app(request)
        guild_id = self._guild_key(request)
        if guild_id is not None and guild_id not in self._guilds:
            raise _HttpError(403, 50001, "Missing Access")
        existing = self.commands.get(guild_id, [])
        self.commands[guild_id] = [self._command_out(c, guild_id, existing) for c in request[_BODY] or []]
        return _json_response(self.commands[guild_id])

    async def _post_command(self, request: web.Request) -> web.Response:
        self._check_app(request)
        guild_id = self._guild_key(request)
        existing = self.commands.setdefault(guild_id, [])
        out = self._command_out(request[_BODY], guild_id, existing)
        existing[:] = [c for c in existing if c["id"] != out["id"]] + [out]
        return _json_response(out)

    # ---- guilds / channels / messages

    async def _get_guild(self, request: web.Request) -> web.Response:
        guild = self._guilds.get(int(request.match_info["guild_id"]))
        if guild is None:
            raise _HttpError(404, 10004, "Unknown Guild")
        return _json_response(self._guild_payload(guild))

    async def _get_member(self, request: web.Request) -> web.Response:
        guild = self._guilds.get(int(request.match_info["guild_id"]))
        user_id = int(request.match_info["user_id"])
        if guild is None or (user_id not in guild.member_ids and user_id != self.bot_id):
            raise _HttpError(404, 10007, "Unknown Member")
        return _json_response(self._member_payload(guild, user_id))

    async def _get_channel(self, request: web.Request) -> web.Response:
        return _json_response(self._channel_or_404(request.match_info["channel_id"]))

    async def _get_messages(self, request: web.Request) -> web.Response:
        channel_id = int(self._channel_or_404(request.match_info["channel_id"])["id"])
        limit = int(request.query.get("limit", 50))
        before = int(request.query.get("before", 0)) or None
        after = int(request.query.get("after", 0)) or None
        msgs = [m for m in self.messages(channel_id) if (before is None or m.id < before) and (after is None or m.id > after)]
        msgs = sorted(msgs, key=lambda m: m.id, reverse=True)[:limit]
        return _json_response([m.data for m in msgs])

    async def _get_message(self, request: web.Request) -> web.Response:
        msg = self._message_or_404(request.match_info["message_id"], request.match_info["channel_id"])
        return _json_response(msg.data)

    @staticmethod
    def _validate_content(body: dict[str, Any], files: list[dict[str, Any]], *, creating: bool) -> None:
        content = body.get("content")
        if content is not None and len(content) > 2000:
            raise _HttpError(
                400,
                50035,
                "Invalid Form Body",
                {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}},
            )
        if creating and not (content or body.get("embeds") or files or body.get("sticker_ids") or body.get("components") or body.get("poll")):
            raise _HttpError(400, 50006, "Cannot send an empty message")

    def _pings(self, msg: FakeMessage, allowed: dict[str, Any] | None, reply_author: str | None) -> set[str]:
        content = msg.content
        if allowed is None:
            parse, users, roles, replied = {"users", "roles", "everyone"}, set(), set(), True
        else:
            parse = set(allowed.get("parse") or [])
            users = {str(u) for u in allowed.get("users") or []}
            roles = {str(r) for r in allowed.get("roles") or []}
            replied = bool(allowed.get("replied_user", False))
        out = set()
        if "everyone" in parse:
            out |= {name for name in ("everyone", "here") if f"@{name}" in content}
        out |= {f"user:{u}" for u in re.findall(r"<@!?(\d+)>", content) if "users" in parse or u in users}
        out |= {f"role:{r}" for r in re.findall(r"<@&(\d+)>", content) if "roles" in parse or r in roles}
        if reply_author and replied:
            out.add(f"user:{reply_author}")
        return out

    def _bot_message(
        self,
        channel_id: int,
        body: dict[str, Any],
        files: list[dict[str, Any]],
        *,
        flags: int = 0,
        extra: dict[str, Any] | None = None,
        interaction_id: int | None = None,
    ) -> FakeMessage:
        reference = body.get("message_reference")
        reply_to = None
        if reference and reference.get("message_id"):
            target = self._messages.get(int(reference["message_id"]))
            if target is None or target.deleted:
                if reference.get("fail_if_not_exists", True):
                    raise _HttpError(
                        400,
                        50035,
                        "Invalid Form Body",
                        {"message_reference": {"_errors": [{"code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "message": "Unknown message"}]}},
                    )
            else:
                reply_to = target.id
        data = self._message_payload(
            channel_id, self.bot_user, body.get("content") or "", reply_to=reply_to, reply_ping=False, mentions_from_content=False
        )
        data.update(
            tts=bool(body.get("tts")),
            embeds=body.get("embeds") or [],
            components=body.get("components") or [],
            flags=flags | int(body.get("flags") or 0),
            attachments=[
                {"id": str(self._snowflake()), "filename": f["filename"], "size": f["size"], "url": "", "proxy_url": ""}
                for f in files
            ],
        )
        if body.get("nonce") is not None:
            data["nonce"] = body["nonce"]
        data.update(extra or {})
        allowed = body.get("allowed_mentions")
        msg = self._store(data, allowed, interaction_id=interaction_id)
        self._apply_mentions(msg, allowed)
        return msg

    def _apply_mentions(self, msg: FakeMessage, allowed: dict[str, Any] | None) -> None:
        ref = msg.data.get("referenced_message")
        pings = self._pings(msg, allowed, ref["author"]["id"] if ref else None)
        msg.pings |= pings
        guild_id = int(msg.data["guild_id"]) if msg.data.get("guild_id") else None
        mentioned = {p[5:] for p in pings if p.startswith("user:")}
        msg.data["mentions"] = [u for u in self._mentions(msg.content, guild_id)[0] if u["id"] in mentioned]
        if ref and f"user:{ref['author']['id']}" in pings and all(u["id"] != ref["author"]["id"] for u in msg.data["mentions"]):
            msg.data["mentions"].append(dict(ref["author"]))
        msg.data["mention_roles"] = [p[5:] for p in pings if p.startswith("role:")]
        msg.data["mention_everyone"] = bool(pings & {"everyone", "here"})

    def _edit(self, msg: FakeMessage, body: dict[str, Any], files: list[dict[str, Any]]) -> None:
        self._validate_content(body, files, creating=False)
        for key in ("content", "embeds", "components"):
            if key in body:
                msg.data[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "flags" in body and body["flags"] is not None:
            msg.data["flags"] = (msg.flags & MESSAGE_FLAG_EPHEMERAL) | int(body["flags"])
        msg.data["flags"] = msg.flags & ~MESSAGE_FLAG_LOADING
        msg.data["edited_timestamp"] = _now_iso()
        msg.versions.append(msg.content)
        allowed = body.get("allowed_mentions")
        msg.allowed_mentions.append(allowed)
        self._apply_mentions(msg, allowed)

    def _echo(self, event: str, msg: FakeMessage) -> None:
        if self.echo_own_messages and not msg.ephemeral:
            self._spawn(self.dispatch(event, dict(msg.data)))

    async def _post_message(self, request: web.Request) -> web.Response:
        channel = self._channel_or_404(request.match_info["channel_id"])
        channel_id = int(channel["id"])
        if not self.can_send(channel_id):
            raise _HttpError(403, 50013, "Missing Permissions")
        body = request[_BODY] or {}
        files = request[_CALL].files
        self._validate_content(body, files, creating=True)
        msg = self._bot_message(channel_id, body, files)
        self._echo("MESSAGE_CREATE", msg)
        return _json_response(msg.data)

    async def _patch_message(self, request: web.Request) -> web.Response:
        msg = self._message_or_404(request.match_info["message_id"], request.match_info["channel_id"])
        if msg.author_id != self.bot_id:
            raise _HttpError(403, 50005, "Cannot edit a message authored by another user")
        self._edit(msg, request[_BODY] or {}, request[_CALL].files)
        self._echo("MESSAGE_UPDATE", msg)
        return _json_response(msg.data)

    async def _delete_message(self, request: web.Request) -> web.Response:
        msg = self._message_or_404(request.match_info["message_id"], request.match_info["channel_id"])
        if msg.author_id != self.bot_id:
            raise _HttpError(403, 50013, "Missing Permissions")
        msg.deleted = True
        data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
        if msg.data.get("guild_id"):
            data["guild_id"] = msg.data["guild_id"]
        if self.echo_own_messages:
            self._spawn(self.dispatch("MESSAGE_DELETE", data))
        return web.Response(status=204)

    async def _typing(self, request: web.Request) -> web.Response:
        channel_id = int(self._channel_or_404(request.match_info["channel_id"])["id"])
        if not self.can_send(channel_id):
            raise _HttpError(403, 50013, "Missing Permissions")
        self.typing.append(channel_id)
        return web.Response(status=204)

    # ---- interactions

    def _interaction_by_token(self, token: str) -> FakeInteraction:
        for inter in self.interactions:
            if inter.token == token:
                return inter
        raise _HttpError(404, 10015, "Unknown Webhook")

    def _interaction_extra(self, inter: FakeInteraction, original: bool) -> dict[str, Any]:
        return {
            "type": 20 if original else 0,
            "webhook_id": str(self.application_id),
            "application_id": str(self.application_id),
            "interaction_metadata": {
                "id": str(inter.id),
                "type": 2,
                "name": inter.name,
                "user": self._users[inter.user_id],
                "authorizing_integration_owners": inter.payload.get("authorizing_integration_owners", {}),
            },
        }

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        inter = self._interaction_by_token(request.match_info["token"])
        if str(inter.id) != request.match_info["interaction_id"]:
            raise _HttpError(404, 10062, "Unknown interaction")
        if inter.callbacks:
            raise _HttpError(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - inter.created > self.interaction_ack_timeout:
            raise _HttpError(404, 10062, "Unknown interaction")
        body = request[_BODY] or {}
        kind = body.get("type")
        data = body.get("data") or {}
        message: FakeMessage | None = None
        if kind in (4, 5):
            if kind == 4:
                self._validate_content(data, request[_CALL].files, creating=True)
            flags = int(data.get("flags") or 0) | (MESSAGE_FLAG_LOADING if kind == 5 else 0)
            payload = {**data, "flags": 0} if kind == 4 else {"content": "", "allowed_mentions": data.get("allowed_mentions")}
            message = self._bot_message(
                inter.channel_id,
                payload,
                request[_CALL].files,
                flags=flags,
                extra=self._interaction_extra(inter, original=True),
                interaction_id=inter.id,
            )
            inter.original_id = message.id
            self._echo("MESSAGE_CREATE", message)
        elif kind not in (1, 6, 7, 8, 9, 10, 12):
            raise _HttpError(400, 50035, "Invalid Form Body", {"type": {"_errors": [{"code": "BASE_TYPE_CHOICES"}]}})
        inter.callbacks.append(body)
        inter.callback_times.append(time.monotonic())
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        out: dict[str, Any] = {
            "interaction": {
                "id": str(inter.id),
                "type": 2,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message.ephemeral),
            }
        }
        if message is not None:
            out["interaction"]["response_message_id"] = str(message.id)
            out["resource"] = {"type": kind, "message": message.data}
        return _json_response(out)

    def _interaction_message(self, inter: FakeInteraction, message_id: str) -> FakeMessage:
        if message_id == "@original":
            if inter.original_id is None:
                raise _HttpError(404, 10008, "Unknown Message")
            return self._message_or_404(inter.original_id)
        msg = self._message_or_404(message_id)
        if msg.interaction_id != inter.id:
            raise _HttpError(404, 10008, "Unknown Message")
        return msg

    async def _followup(self, request: web.Request) -> web.Response:
        self._check_app(request)
        inter = self._interaction_by_token(request.match_info["token"])
        if not inter.callbacks:
            raise _HttpError(404, 10015, "Unknown Webhook")
        body = request[_BODY] or {}
        files = request[_CALL].files
        self._validate_content(body, files, creating=True)
        original = inter.original
        if original is not None and original.loading and not original.deleted:
            # After a defer, the first followup replaces the "thinking" message.
            self._edit(original, body, files)
            msg = original
            self._echo("MESSAGE_UPDATE", msg)
        else:
            msg = self._bot_message(
                inter.channel_id,
                body,
                files,
                extra=self._interaction_extra(inter, original=False),
                interaction_id=inter.id,
            )
            inter.followup_ids.append(msg.id)
            self._echo("MESSAGE_CREATE", msg)
        if request.query.get("wait") in ("1", "true", "True"):
            return _json_response(msg.data)
        return web.Response(status=204)

    async def _webhook_get(self, request: web.Request) -> web.Response:
        self._check_app(request)
        inter = self._interaction_by_token(request.match_info["token"])
        return _json_response(self._interaction_message(inter, request.match_info["message_id"]).data)

    async def _webhook_edit(self, request: web.Request) -> web.Response:
        self._check_app(request)
        inter = self._interaction_by_token(request.match_info["token"])
        msg = self._interaction_message(inter, request.match_info["message_id"])
        self._edit(msg, request[_BODY] or {}, request[_CALL].files)
        self._echo("MESSAGE_UPDATE", msg)
        return _json_response(msg.data)

    async def _webhook_delete(self, request: web.Request) -> web.Response:
        self._check_app(request)
        inter = self._interaction_by_token(request.match_info["token"])
        msg = self._interaction_message(inter, request.match_info["message_id"])
        msg.deleted = True
        return web.Response(status=204)
