"""History on PostgreSQL, shared by several processes: short transactions, a per-conversation lock.

The advisory lock serialises the read of the window and the insert of the user's message across processes,
and is held only for that transaction, never while a model answers. The answer needs no lock: its place in
the history comes from its turn_id.
"""

from __future__ import annotations

import time

from sqlalchemy import bindparam, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.storage.history import (
    DELETE_CONVERSATION,
    INSERT_MESSAGE,
    RECENT,
    HistoryStore,
    message_row,
    recent_parameters,
)
from app.storage.messages import StoredMessage

ADVISORY_LOCK = select(func.pg_advisory_xact_lock(bindparam("conversation_id")))


class PostgresHistoryStore(HistoryStore):
    async def start_turn(
        self, conversation_id: int, user_message: StoredMessage, token_budget: int, overhead_per_message: int = 0
    ) -> tuple[list[StoredMessage], int]:
        async def locked() -> tuple[list[StoredMessage], int]:
            async with self._engine.begin() as connection:
                await connection.execute(ADVISORY_LOCK, {"conversation_id": conversation_id})
                history = await _window(connection, conversation_id, token_budget, overhead_per_message)
                message_id = await _insert(connection, message_row(conversation_id, user_message, None, None))
            return history, message_id

        return await self._retrying(locked)

    async def append(
        self, conversation_id: int, message: StoredMessage, *, turn_id: int | None = None, latency_ms: int | None = None
    ) -> int:
        async def insert_one() -> int:
            async with self._engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                return await _insert(autocommit, message_row(conversation_id, message, turn_id, latency_ms))

        return await self._retrying(insert_one)

    async def recent(self, conversation_id: int, token_budget: int, overhead_per_message: int = 0) -> list[StoredMessage]:
        async with self._engine.connect() as connection:
            return await _window(connection, conversation_id, token_budget, overhead_per_message)

    async def reset(self, conversation_id: int) -> int:
        async def delete_all() -> int:
            async with self._engine.begin() as connection:
                await connection.execute(ADVISORY_LOCK, {"conversation_id": conversation_id})
                result = await connection.execute(DELETE_CONVERSATION, {"conversation_id": conversation_id})
            return result.rowcount or 0

        return await self._retrying(delete_all)

    async def ping(self) -> float:
        started = time.perf_counter()
        async with self._engine.connect() as connection:
            await connection.execute(select(literal_column("1")))
        return time.perf_counter() - started


async def _window(connection: AsyncConnection, conversation_id: int, budget: int, overhead: int) -> list[StoredMessage]:
    result = await connection.execute(RECENT, recent_parameters(conversation_id, budget, overhead))
    return [StoredMessage(*row) for row in result.all()]


async def _insert(connection: AsyncConnection, row: dict) -> int:
    return int((await connection.execute(INSERT_MESSAGE, row)).scalar_one())
