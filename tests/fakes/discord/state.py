"""The world of the fake and what it has logged: users, guilds, channels, messages, snowflakes, and the
records tests assert on (``RestCall``, ``FakeMessage``, ``FakeInteraction``, ``FakeGuild``).

``DiscordState`` is the base of every part of ``FakeDiscord`` (gateway, REST, interactions, faults, runner):
the parts are mixins over this one state, and this module imports none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

DISCORD_EPOCH_MS = 1420070400000

# Intents (gateway bits) and permissions (bit numbers) the fake cares about.
INTENT_GUILDS = 1 << 0
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
PERM_ADMINISTRATOR = 1 << 3
PERM_MANAGE_GUILD = 1 << 5  # "Manage Server"
PERM_VIEW_CHANNEL = 1 << 10
PERM_SEND_MESSAGES = 1 << 11
PERM_CREATE_PUBLIC_THREADS = 1 << 35
PERM_CREATE_PRIVATE_THREADS = 1 << 36
PERM_SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 52) - 1  # what the owner and an administrator have: every bit Discord defines
# The @everyone role's permissions in every guild of the fake (what Discord gives a new server's @everyone,
# less what the fake never needs): no Manage Server, so a member without roles is a plain member.
DEFAULT_PERMISSIONS = (
    (1 << 6)  # add reactions
    | PERM_VIEW_CHANNEL
    | PERM_SEND_MESSAGES
    | (1 << 14)  # embed links
    | (1 << 15)  # attach files
    | (1 << 16)  # read message history
    | (1 << 18)  # use external emojis
    | (1 << 31)  # use application commands
    | PERM_CREATE_PUBLIC_THREADS
    | PERM_CREATE_PRIVATE_THREADS
    | PERM_SEND_MESSAGES_IN_THREADS
)
CHANNEL_TEXT, CHANNEL_DM, CHANNEL_PUBLIC_THREAD, CHANNEL_PRIVATE_THREAD = 0, 1, 11, 12
THREAD_TYPES = (10, CHANNEL_PUBLIC_THREAD, CHANNEL_PRIVATE_THREAD)
MESSAGE_FLAG_EPHEMERAL = 1 << 6
MESSAGE_FLAG_LOADING = 1 << 7
MESSAGE_FLAG_HAS_THREAD = 1 << 5


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


@dataclass(frozen=True)
class FakeModal:
    """A modal the bot opened (an interaction's MODAL callback, type 9), as Discord would show it."""

    custom_id: str
    title: str
    components: list[dict[str, Any]]  # as sent: action rows (type 1) or labels (type 18) around text inputs

    @property
    def text_inputs(self) -> dict[str, dict[str, Any]]:
        """The modal's text inputs (type 4) by custom_id, in order, with the label they show."""
        inputs: dict[str, dict[str, Any]] = {}
        for top in self.components:
            inner = top.get("components") or ([top["component"]] if top.get("component") else [])
            for component in inner:
                if component.get("type") == 4:
                    label = component.get("label") or top.get("label")
                    inputs[component["custom_id"]] = {**component, "label": label}
        return inputs


@dataclass
class FakeInteraction:
    """An injected interaction (slash command, button press, modal submit) and everything the bot did with it.

    ``name`` is the command's path ("settings channel open"), the label of a pressed button, or the custom_id
    of a submitted modal (for a button or a modal under a command's message: that command's path).
    """

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
    modal_submitted: bool = False  # its modal was submitted (and so closed: Discord takes one submission)
    _fake: DiscordState | None = field(default=None, repr=False)

    @property
    def kind(self) -> int:
        """Discord's interaction type: 2 application command, 3 component, 5 modal submit."""
        return int(self.payload["type"])

    @property
    def response_type(self) -> int | None:
        return self.callbacks[0].get("type") if self.callbacks else None

    @property
    def modal(self) -> FakeModal | None:
        """The modal the bot answered with (callback type 9), if it did."""
        if self.response_type != 9:
            return None
        data = self.callbacks[0].get("data") or {}
        return FakeModal(data["custom_id"], data["title"], data["components"])

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
    channels: dict[str, int]  # name -> text channel id (threads are not here: thread_ids)
    member_ids: list[int]
    joined_at: str
    owner_id: int = 0
    roles: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> payload; @everyone's id: the guild's
    member_roles: dict[int, list[int]] = field(default_factory=dict)  # user id -> role ids (not @everyone)
    thread_ids: list[int] = field(default_factory=list)

    @property
    def everyone_role(self) -> int:
        return self.id


def role_payload(role_id: int, name: str, permissions: int, position: int) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": name,
        "permissions": str(permissions),
        "position": position,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def compile_pattern(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    return pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)




class DiscordState:
    """Users, guilds, channels and messages; the logs; waiting for something to happen.

    The hooks below are what one part gives the others: each stub names the part that implements it, so a
    part's dependencies on its siblings are visible here rather than only at the call. `FakeDiscord` (which
    inherits every part) overrides them all; a stub that runs means a part was used without its sibling.
    """

    # ------------------------------------------------------------------------- hooks between the parts

    @property
    def gateway_url(self) -> str:
        """(server) The gateway's ws:// URL, as REST's /gateway and the gateway's READY give it."""
        raise NotImplementedError

    @property
    def cdn_base_url(self) -> str:
        """(server) Where the files users attach are served (Discord's CDN): ``{cdn_base_url}/{id}/{filename}``."""
        raise NotImplementedError

    async def _get_attachment(self, request: web.Request) -> web.Response:
        """(events) Serve the bytes of a file a user attached, as Discord's CDN does."""
        raise NotImplementedError

    async def dispatch(self, event: str, data: dict[str, Any], shard_id: int | None = None) -> bool:
        """(gateway) Send a DISPATCH event to the live connection of the shard that owns it; False if dropped."""
        raise NotImplementedError

    @staticmethod
    def _validate_content(body: dict[str, Any], files: list[dict[str, Any]], *, creating: bool) -> None:
        """(bot_messages) Refuse a message body Discord would refuse, as Discord's HTTP 400."""
        raise NotImplementedError

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
        """(bot_messages) Store a message the bot sends (by REST or as an interaction's response)."""
        raise NotImplementedError

    def _edit(self, msg: FakeMessage, body: dict[str, Any], files: list[dict[str, Any]]) -> None:
        """(bot_messages) Apply the bot's edit of one of its messages, keeping the earlier version."""
        raise NotImplementedError

    def _echo(self, event: str, msg: FakeMessage) -> None:
        """(bot_messages) Send the bot's own message back to it as `event`, as Discord does, if enabled."""
        raise NotImplementedError

    def _message_or_404(self, message_id: Any, channel_id: Any = None) -> FakeMessage:
        """(rest) The live message, or Discord's 404 Unknown Message."""
        raise NotImplementedError

    def _check_app(self, request: web.Request) -> None:
        """(rest) Discord's 404 Unknown Application unless the request names the bot's application."""
        raise NotImplementedError

    async def _hold_if_delayed(self, method: str, path: str) -> None:
        """(ratelimits) Wait out a scripted delay of this call, if one matches."""
        raise NotImplementedError

    def _scripted(self, method: str, path: str) -> web.Response | None:
        """(ratelimits) The scripted fault's response for this call, if one matches."""
        raise NotImplementedError

    def _check_rate_limit(self, request: web.Request, call: RestCall) -> web.Response | None:
        """(ratelimits) A 429 if the call's bucket is exhausted; None lets it through (with bucket headers)."""
        raise NotImplementedError

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        """(interactions) POST /interactions/{id}/{token}/callback: the interaction's first response."""
        raise NotImplementedError

    async def _followup(self, request: web.Request) -> web.Response:
        """(interactions) POST /webhooks/{application_id}/{token}: a followup message."""
        raise NotImplementedError

    async def _webhook_get(self, request: web.Request) -> web.Response:
        """(interactions) GET an interaction's message through its webhook."""
        raise NotImplementedError

    async def _webhook_edit(self, request: web.Request) -> web.Response:
        """(interactions) PATCH an interaction's message through its webhook."""
        raise NotImplementedError

    async def _webhook_delete(self, request: web.Request) -> web.Response:
        """(interactions) DELETE an interaction's message through its webhook."""
        raise NotImplementedError

    def _announce(self, event: str, data: dict[str, Any]) -> None:
        """(gateway) Tell live bots about a change of the world, before any event dispatched after this call."""
        raise NotImplementedError

    def member_permissions(self, guild_id: int, user_id: int, channel_id: int | None = None) -> int:
        """(guilds) A member's permissions in the guild, or in one channel (overwrites applied), as Discord
        computes them."""
        raise NotImplementedError

    def can_send(self, channel_id: int) -> bool:
        """(guilds) Whether the bot may post in this channel (in a thread: Send Messages in Threads)."""
        raise NotImplementedError

    async def _start_thread_from_message(self, request: web.Request) -> web.Response:
        """(guilds) POST /channels/{channel_id}/messages/{message_id}/threads."""
        raise NotImplementedError

    async def _start_thread(self, request: web.Request) -> web.Response:
        """(guilds) POST /channels/{channel_id}/threads: a thread without a starter message."""
        raise NotImplementedError

    def _command_data(
        self,
        path: str,
        options: dict[str, Any] | list[dict[str, Any]] | None,
        *,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
    ) -> dict[str, Any]:
        """(command_options) An application command interaction's ``data``: the command, the subcommand
        path, the typed options and their ``resolved`` objects."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------ the world

    def _create_world(self, bot_name: str) -> None:
        self.bot_user = self._make_user(bot_name, bot=True)
        self.bot_id: int = int(self.bot_user["id"])
        self.application_id: int = self.bot_id
        self.alice = self.add_user("alice")
        self.bob = self.add_user("bob")
        self.guild = self.add_guild("Kortana Test", channels=("general", "read-only"), readonly=("read-only",))
        self.channel: int = self.guild.channels["general"]
        self.readonly_channel: int = self.guild.channels["read-only"]

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
        owner: dict[str, Any] | None = None,
    ) -> FakeGuild:
        """A guild with text channels; the bot cannot send in the ``readonly`` ones. ``owner`` (default
        alice) has every permission; its @everyone role has ``DEFAULT_PERMISSIONS``.

        If bots are connected, the owning shard receives GUILD_CREATE (the bot "joins" it).
        """
        guild_id = id or (((self._guild_id_base + len(self._guilds)) << 22) | 0x3FFFFF)
        humans = [uid for uid in self._users if uid != getattr(self, "bot_id", None)]
        owner_id = int((owner or self.alice)["id"])
        guild = FakeGuild(guild_id, name, {}, humans, now_iso(), owner_id=owner_id)
        guild.roles[guild.everyone_role] = role_payload(guild.everyone_role, "@everyone", DEFAULT_PERMISSIONS, 0)
        self._guilds[guild_id] = guild
        readonly = set(readonly)
        for channel_name in channels:
            self.add_channel(guild_id, channel_name, can_send=channel_name not in readonly)
        self._announce("GUILD_CREATE", self._guild_payload(guild))
        return guild

    def add_channel(self, guild_id: int, name: str, *, can_send: bool = True) -> int:
        """A text channel; live bots get CHANNEL_CREATE."""
        guild = self._guilds[guild_id]
        channel_id = self._snowflake()
        self._channels[channel_id] = {
            "id": str(channel_id),
            "type": CHANNEL_TEXT,
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
        self._announce("CHANNEL_CREATE", self._channels[channel_id])
        return channel_id

    def _set_deny(self, channel_id: int, deny: int) -> None:
        """Deny the bot ``deny`` in this channel, on top of what its member overwrite already denies."""
        channel = self._channels[channel_id]
        mine = [o for o in channel["permission_overwrites"] if o["id"] == str(self.bot_id)]
        denied = deny | (int(mine[0]["deny"]) if mine else 0)
        channel["permission_overwrites"] = [
            o for o in channel["permission_overwrites"] if o["id"] != str(self.bot_id)
        ] + [{"id": str(self.bot_id), "type": 1, "allow": "0", "deny": str(denied)}]

    def channel_payload(self, channel_id: int) -> dict[str, Any]:
        """A channel's payload as it is now, or as it was when it was deleted."""
        channel_id = int(channel_id)
        return self._channels.get(channel_id) or self._deleted_channels[channel_id]

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
            "roles": [str(role_id) for role_id in guild.member_roles.get(user_id, [])],
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
            "owner_id": str(guild.owner_id),
            "joined_at": guild.joined_at,
            "large": False,
            "member_count": len(members),
            "roles": [dict(role) for role in guild.roles.values()],
            "channels": [dict(self._channels[cid]) for cid in guild.channels.values()],
            "members": members,
            "features": [],
            "emojis": [],
            "stickers": [],
            "voice_states": [],
            "presences": [],
            "threads": [
                dict(self._channels[tid]) for tid in guild.thread_ids
                if not self._channels[tid]["thread_metadata"]["archived"]
            ],
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

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 5.0,  # noqa: ASYNC109 - the fake's own API: tests pass timeout=
        what: str = "",
    ) -> Any:
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
        regex = compile_pattern(pattern)
        return [c for c in self.calls if method in ("*", c.method) and regex.fullmatch(c.path)]

    async def wait_for_call(
        self,
        method: str,
        pattern: str | re.Pattern[str],
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the fake's own API: tests pass timeout=
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

    def _token_ok(self, token: str | None) -> bool:
        if not token:
            return False
        return self.token is None or token == self.token

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
        channel = self._channels.get(channel_id)
        assert channel is not None, f"no channel {channel_id}: it never existed or was deleted"
        guild_id = int(channel["guild_id"]) if channel.get("guild_id") else None
        mentions, roles, everyone = self._mentions(content, guild_id) if mentions_from_content else ([], [], False)
        data: dict[str, Any] = {
            "id": str(self._snowflake()),
            "channel_id": str(channel_id),
            "type": 0,
            "content": content,
            "author": author,
            "timestamp": now_iso(),
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
            if channel["type"] in THREAD_TYPES:
                channel["message_count"] += 1
                channel["total_message_sent"] += 1
        return msg

