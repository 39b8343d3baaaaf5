"""UsageStore: the tokens answers cost, as the history store charged them (per UTC day, server, user, engine)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.storage.failures import unavailable_as_storage_error
from app.storage.models import token_usage
from app.storage.records import UsageTotal


class UsageStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def used(self, day: date, guild_id: int, user_id: int) -> int:
        """The tokens a user's answers cost in a server (0: DMs and the terminal) on a day, every engine."""
        statement = select(func.coalesce(func.sum(token_usage.c.tokens), 0)).where(
            token_usage.c.day == day, token_usage.c.guild_id == guild_id, token_usage.c.user_id == user_id
        )
        return int(await self._scalar(statement))

    async def day_total(self, day: date) -> int:
        """The tokens every answer of the day cost."""
        statement = select(func.coalesce(func.sum(token_usage.c.tokens), 0)).where(token_usage.c.day == day)
        return int(await self._scalar(statement))

    async def totals(self, since: date) -> list[UsageTotal]:
        """Per day (newest first), server and engine since `since`: the tokens and the answers."""
        statement = (
            select(
                token_usage.c.day,
                token_usage.c.guild_id,
                token_usage.c.engine,
                func.sum(token_usage.c.tokens),
                func.sum(token_usage.c.answers),
            )
            .where(token_usage.c.day >= since)
            .group_by(token_usage.c.day, token_usage.c.guild_id, token_usage.c.engine)
            .order_by(token_usage.c.day.desc(), token_usage.c.guild_id, token_usage.c.engine)
        )
        with unavailable_as_storage_error():
            async with self._engine.connect() as connection:
                rows = (await connection.execute(statement)).all()
        return [UsageTotal(row[0], row[1], row[2], int(row[3]), int(row[4])) for row in rows]

    async def _scalar(self, statement):  # type: ignore[no-untyped-def]
        with unavailable_as_storage_error():
            async with self._engine.connect() as connection:
                return await connection.scalar(statement)
