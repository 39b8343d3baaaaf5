"""ServerSettingsStore: what server admins set from Discord — settings per server and per channel, access rules.

Few rows, read rarely (the conversation layer caches them): plain Core statements on pool connections. Writes are
upserts, so two processes changing one server at once never collide; the last write of a setting wins.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import and_, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from app.storage.failures import unavailable_as_storage_error
from app.storage.models import SERVER_WIDE, access_rules, server_settings
from app.storage.records import PLACE_SETTING_NAMES, AccessRule, GuildSettingsRecord, PlaceSettings

RULE_KINDS = ("user", "role", "channel")
RULES = ("allow", "block")
_SETTING_COLUMNS = [server_settings.c[name] for name in PLACE_SETTING_NAMES]


class ServerSettingsStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def load(self, guild_id: int) -> GuildSettingsRecord:
        """Everything set for the server. A database that can't be used now is StorageUnavailable."""
        with unavailable_as_storage_error():
            async with self._engine.connect() as connection:
                places = await connection.execute(
                    select(server_settings.c.channel_id, *_SETTING_COLUMNS).where(
                        server_settings.c.guild_id == guild_id
                    )
                )
                rules = await connection.execute(
                    select(access_rules.c.kind, access_rules.c.target_id, access_rules.c.rule)
                    .where(access_rules.c.guild_id == guild_id)
                    .order_by(access_rules.c.kind, access_rules.c.target_id)
                )
                settings = {channel_id: PlaceSettings(*values) for channel_id, *values in places}
                found_rules = tuple(AccessRule(*row) for row in rules)
        return GuildSettingsRecord(
            guild_id,
            server=settings.pop(SERVER_WIDE, PlaceSettings()),
            channels=settings,
            rules=found_rules,
        )

    async def change(
        self, guild_id: int, channel_id: int | None, changes: Mapping[str, object], *, by: int
    ) -> None:
        """Set the named settings of the server (channel_id None) or of one channel; a value None clears one (it
        falls back again). A place left with nothing set loses its row."""
        unknown = set(changes) - set(PLACE_SETTING_NAMES)
        if unknown:
            raise ValueError(f"not a setting: {', '.join(sorted(unknown))}")
        if not changes:
            return
        place = SERVER_WIDE if channel_id is None else channel_id
        values = {**changes, "updated_by": by}
        upsert = (
            self._insert(server_settings)
            .values(guild_id=guild_id, channel_id=place, **values)
            .on_conflict_do_update(
                index_elements=["guild_id", "channel_id"], set_={**values, "updated_at": func.current_timestamp()}
            )
        )
        empty = delete(server_settings).where(
            server_settings.c.guild_id == guild_id,
            server_settings.c.channel_id == place,
            and_(*(column.is_(None) for column in _SETTING_COLUMNS)),
        )
        with unavailable_as_storage_error():
            async with self._engine.begin() as connection:
                await connection.execute(upsert)
                await connection.execute(empty)

    async def set_rule(self, guild_id: int, kind: str, target_id: int, rule: str | None, *, by: int) -> bool:
        """Allow or block a user, a role or a channel in the server; `rule` None removes its rule. False: there was
        no rule to remove."""
        if kind not in RULE_KINDS or (rule is not None and rule not in RULES):
            raise ValueError(f"not a rule: {kind} {rule}")
        with unavailable_as_storage_error():
            async with self._engine.begin() as connection:
                if rule is None:
                    return (await connection.execute(_rule_of(guild_id, kind, target_id))).rowcount > 0
                values = {"rule": rule, "updated_by": by}
                await connection.execute(
                    self._insert(access_rules)
                    .values(guild_id=guild_id, kind=kind, target_id=target_id, **values)
                    .on_conflict_do_update(
                        index_elements=["guild_id", "kind", "target_id"],
                        set_={**values, "updated_at": func.current_timestamp()},
                    )
                )
                return True

    async def forget_channel(self, guild_id: int, channel_id: int) -> None:
        """A deleted channel's settings and rule go with it."""
        with unavailable_as_storage_error():
            async with self._engine.begin() as connection:
                await connection.execute(
                    delete(server_settings).where(
                        server_settings.c.guild_id == guild_id, server_settings.c.channel_id == channel_id
                    )
                )
                await connection.execute(_rule_of(guild_id, "channel", channel_id))


def _rule_of(guild_id: int, kind: str, target_id: int):  # type: ignore[no-untyped-def]
    return delete(access_rules).where(
        access_rules.c.guild_id == guild_id, access_rules.c.kind == kind, access_rules.c.target_id == target_id
    )
