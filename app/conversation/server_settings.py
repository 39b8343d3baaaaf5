"""ServerSettings: what a server's admins set, merged over the operator's environment, and who may talk where.

Precedence, for each setting: the channel's value (a thread takes its parent channel's), else the server's, else
the environment's. Access: a blocked channel, user or role is never answered (blocked wins); once a server allows
some channels (or some users and roles), only those are answered.

Each server's settings are read once, then kept: a turn never waits for them again. A copy older than
SETTINGS_CACHE_SECONDS is still used, while one read in the background replaces it; so a change made in another
process of a PostgreSQL deployment applies within that time and a read. A change made through this object applies
at once here. A server whose settings cannot be read again (the database is away) keeps its last copy, and the read
is tried again after FAILED_READ_RETRY_S; a server never read yet waits for its first read, which is
StorageUnavailable when the database is away.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.config import AllowedModel
from app.conversation.turn_text import clean_text
from app.storage import (
    AccessRule,
    GuildSettingsRecord,
    PlaceSettings,
    ServerSettingsStore,
    StorageUnavailable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "channel"
PARENT_CHANNEL = "parent channel"
SERVER = "server"
ENVIRONMENT = "environment"
MAX_DAILY_TOKENS = 100_000_000
MAX_COOLDOWN_S = 3600.0
MAX_CACHED_SERVERS = 10_000
FAILED_READ_RETRY_S = 1.0


class SettingRefused(Exception):
    """A setting that cannot be stored as asked; `str()` is one sentence for the admin who asked."""


@dataclass(frozen=True, slots=True)
class Sourced(Generic[T]):
    value: T
    source: str  # CHANNEL, PARENT_CHANNEL, SERVER or ENVIRONMENT


@dataclass(frozen=True, slots=True)
class Effective:
    """The settings in effect in one channel, each with where it comes from."""

    persona: Sourced[str]
    open: Sourced[bool]
    threads: Sourced[bool]
    daily_tokens: Sourced[int | None]  # None: no limit
    cooldown_s: Sourced[float]
    model: Sourced[str | None]  # None: the operator's models; else an ALLOWED_MODELS entry, tier:model


@dataclass(frozen=True, slots=True)
class Access:
    allowed: bool
    reason: str | None = None  # why not: "blocked channel", "channel not allowed", "blocked user", ...


@dataclass(frozen=True, slots=True)
class Defaults:
    """The operator's environment: what applies where a server set nothing."""

    persona: str
    open_channels: frozenset[int] = frozenset()
    cooldown_s: float = 0.0
    daily_tokens: int | None = None
    dm_enabled: bool = True


class _Rules:
    """A server's access rules, indexed once per read of its settings: a turn's check is a few lookups."""

    def __init__(self, rules: Iterable[AccessRule]) -> None:
        self.rule: dict[tuple[str, int], str] = {(rule.kind, rule.target_id): rule.rule for rule in rules}
        allowed = [(kind, target) for (kind, target), rule in self.rule.items() if rule == "allow"]
        self.allowed_channels = frozenset(target for kind, target in allowed if kind == "channel")
        self.allows_members = any(kind != "channel" for kind, _ in allowed)

    def check(self, places: Collection[int], user_id: int, role_ids: Iterable[int]) -> Access:
        if any(self.rule.get(("channel", place)) == "block" for place in places):
            return Access(False, "blocked channel")
        if self.allowed_channels and not self.allowed_channels.intersection(places):
            return Access(False, "channel not allowed")
        user_rule = self.rule.get(("user", user_id))
        role_rules = {self.rule.get(("role", role)) for role in role_ids}
        if user_rule == "block":
            return Access(False, "blocked user")
        if "block" in role_rules:
            return Access(False, "blocked role")
        if self.allows_members and user_rule != "allow" and "allow" not in role_rules:
            return Access(False, "not allowed")
        return Access(True)


@dataclass(frozen=True, slots=True)
class _Cached:
    record: GuildSettingsRecord
    rules: _Rules
    read_at: float


class ServerSettings:
    def __init__(
        self,
        store: ServerSettingsStore,
        defaults: Defaults,
        *,
        cache_s: float = 5.0,
        allowed_models: Iterable[AllowedModel] = (),
        persona_max_chars: int = 2000,
        persona_fits: Callable[[str], bool] = lambda persona: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`persona_fits(text)`: whether a persona leaves room for a conversation in the history budget."""
        self.defaults = defaults
        self.allowed_models = list(allowed_models)
        self._allowed_names = {None, *(str(model) for model in self.allowed_models)}
        self.persona_max_chars = persona_max_chars
        self._store = store
        self._cache_s = cache_s
        self._persona_fits = persona_fits
        self._clock = clock
        self._cached: OrderedDict[int, _Cached] = OrderedDict()
        self._reading: dict[int, asyncio.Future[_Cached]] = {}
        self._changes = 0  # changes made through this object: a read that saw fewer is not kept

    async def record(self, guild_id: int) -> GuildSettingsRecord:
        """Everything the server's admins set (as this process last read it)."""
        return (await self._settings_of(guild_id)).record

    async def effective(self, guild_id: int, channel_id: int, parent_id: int | None = None) -> Effective:
        """The settings in effect in a channel; a thread gives its own id and its parent's, whose settings it
        follows."""
        return self._effective((await self._settings_of(guild_id)).record, channel_id, parent_id)

    async def here(
        self, guild_id: int, channel_id: int, parent_id: int | None, user_id: int, role_ids: Iterable[int] = ()
    ) -> tuple[Access, Effective]:
        """`access` and `effective` of one message in a server, from one look at its settings."""
        cached = await self._settings_of(guild_id)
        places = (channel_id,) if parent_id is None else (channel_id, parent_id)
        return cached.rules.check(places, user_id, role_ids), self._effective(cached.record, channel_id, parent_id)

    def _effective(self, record: GuildSettingsRecord, channel_id: int, parent_id: int | None) -> Effective:
        place = parent_id or channel_id
        channel = record.channels.get(place, PlaceSettings())
        channel_source = PARENT_CHANNEL if parent_id else CHANNEL
        defaults = self.defaults

        def pick(name: str, default: T, *, per_channel: bool = True) -> Sourced[T]:
            if per_channel and (value := getattr(channel, name)) is not None:
                return Sourced(value, channel_source)
            if (value := getattr(record.server, name)) is not None:
                return Sourced(value, SERVER)
            return Sourced(default, ENVIRONMENT)

        open_by_environment = place in defaults.open_channels or channel_id in defaults.open_channels
        daily = pick("daily_tokens", defaults.daily_tokens, per_channel=False)
        model = pick("model", None, per_channel=False)  # one the operator no longer allows is not asked for
        return Effective(
            persona=pick("persona", defaults.persona),
            open=pick("open", open_by_environment),
            threads=pick("threads", False),
            daily_tokens=Sourced(daily.value or None, daily.source),  # 0 set by a server: no limit
            cooldown_s=pick("cooldown_s", defaults.cooldown_s, per_channel=False),
            model=model if model.value in self._allowed_names else Sourced(None, ENVIRONMENT),
        )

    async def access(
        self,
        guild_id: int | None,
        channel_id: int,
        parent_id: int | None,
        user_id: int,
        role_ids: Iterable[int] = (),
    ) -> Access:
        """Whether the member may talk with Kor'tana in this channel (a thread: its parent's rules apply too);
        `guild_id` None is a direct message, which the operator's DM_ENABLED decides."""
        if guild_id is None:
            return Access(True) if self.defaults.dm_enabled else Access(False, "dms off")
        places = (channel_id,) if parent_id is None else (channel_id, parent_id)
        return (await self._settings_of(guild_id)).rules.check(places, user_id, role_ids)

    # --- what admins change: checked, stored, and in effect here at once ------------------------------------

    async def change(self, guild_id: int, channel_id: int | None, changes: Mapping[str, object], *, by: int) -> None:
        """Set settings of the server (channel_id None) or a channel; None puts one back to its fallback. A value
        that cannot be stored is SettingRefused, and nothing changes."""
        checked = {name: self._checked(name, value) for name, value in changes.items()}
        await self._store.change(guild_id, channel_id, checked, by=by)
        self._changed(guild_id)

    async def set_rule(self, guild_id: int, kind: str, target_id: int, rule: str | None, *, by: int) -> bool:
        """Allow or block a user, role or channel (`rule` None removes its rule); False: nothing was there to remove."""
        changed = await self._store.set_rule(guild_id, kind, target_id, rule, by=by)
        self._changed(guild_id)
        return changed

    async def forget_channel(self, guild_id: int, channel_id: int) -> None:
        await self._store.forget_channel(guild_id, channel_id)
        self._changed(guild_id)

    def check_persona(self, text: str) -> str:
        """The persona as it would be stored, or SettingRefused saying what is wrong with it."""
        persona = clean_text(text)
        if not persona:
            raise SettingRefused("A persona needs some visible text; nothing was changed.")
        if len(persona) > self.persona_max_chars:
            raise SettingRefused(
                f"That persona is {len(persona):,} characters; the most is {self.persona_max_chars:,}. Nothing was "
                "changed."
            )
        if not self._persona_fits(persona):
            raise SettingRefused(
                "That persona leaves no room for the conversation in this bot's token budget; make it shorter. "
                "Nothing was changed."
            )
        return persona

    def _checked(self, name: str, value: object) -> object:
        if value is None:
            return None
        if name == "persona":
            return self.check_persona(str(value))
        if name == "model":
            if str(value) not in self._allowed_names:
                raise SettingRefused(f"{value} is not among the models this bot's operator allows.")
            return str(value)
        if name == "daily_tokens" and not (type(value) is int and 0 <= value <= MAX_DAILY_TOKENS):
            raise SettingRefused(f"A daily limit is a number of tokens from 0 (no limit) to {MAX_DAILY_TOKENS:,}.")
        if name == "cooldown_s" and not (type(value) in (int, float) and 0 <= value <= MAX_COOLDOWN_S):
            raise SettingRefused(f"A cooldown is from 0 to {MAX_COOLDOWN_S:g} seconds.")
        return value

    # --- the cache ------------------------------------------------------------------------------------------

    async def _settings_of(self, guild_id: int) -> _Cached:
        cached = self._cached.get(guild_id)
        if cached is None:  # never read (or changed here): the turn waits for the read
            return await asyncio.shield(self._reading_of(guild_id))
        if self._clock() - cached.read_at >= self._cache_s:
            self._reading_of(guild_id)  # the turn goes on with this copy meanwhile
        return cached

    def _reading_of(self, guild_id: int) -> asyncio.Future[_Cached]:
        """The server's read in progress, started if there is none: one at a time, however many turns want it."""
        reading = self._reading.get(guild_id)
        if reading is None:
            # One read for every turn that wants it: neither it nor its end logs as the turn that started it.
            reading = asyncio.get_running_loop().create_task(self._read(guild_id), context=contextvars.Context())
            self._reading[guild_id] = reading
            reading.add_done_callback(lambda done: self._read_ended(guild_id, done), context=contextvars.Context())
        return reading

    async def aclose(self) -> None:
        """Stop the reads still running (the database is about to close)."""
        for reading in list(self._reading.values()):
            reading.cancel()
        await asyncio.gather(*self._reading.values(), return_exceptions=True)

    def _read_ended(self, guild_id: int, read: asyncio.Future[_Cached]) -> None:
        if self._reading.get(guild_id) is read:
            del self._reading[guild_id]
        if read.cancelled() or (error := read.exception()) is None:
            return
        stale = self._cached.get(guild_id)
        if stale is not None and isinstance(error, StorageUnavailable):  # keep it; try again a little later
            log.warning("Server settings could not be read again (%s); using the last copy", error.cause)
            retry_at = self._clock() - self._cache_s + FAILED_READ_RETRY_S
            self._cached[guild_id] = _Cached(stale.record, stale.rules, retry_at)
        elif stale is not None:
            log.error("Server settings could not be read again: %r", error)

    def _changed(self, guild_id: int) -> None:
        """This process changed the server's settings: the next turn reads them again, and a read that was already
        running (it may have missed the change) is not kept."""
        self._changes += 1
        self._cached.pop(guild_id, None)
        self._reading.pop(guild_id, None)

    async def _read(self, guild_id: int) -> _Cached:
        changes = self._changes
        record = await self._store.load(guild_id)
        fresh = _Cached(record, _Rules(record.rules), self._clock())
        if changes != self._changes:
            return fresh  # good enough for the turns that waited for it; not kept
        self._cached[guild_id] = fresh
        self._cached.move_to_end(guild_id)
        if len(self._cached) > MAX_CACHED_SERVERS:
            self._cached.popitem(last=False)
        return fresh
