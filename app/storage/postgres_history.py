"""History on PostgreSQL, shared by several processes: short transactions, a per-conversation lock.

The advisory lock serialises, across processes, the user's message with the read of its window, and a reset.
It is held only for those transactions, never while a model answers. The answer is one autocommit statement
that stores it only while its question exists; the question's row lock orders it against a reset.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import bindparam, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.storage._statements import (
    ANSWERS_OF_TURN,
    DELETE_CONVERSATION,
    DELETE_MESSAGES_OF_USER,
    DELETE_TURN,
    EDIT_USER_MESSAGE,
    ERASE_SUMMARIES_OF_USER,
    ERASE_SUMMARY,
    FIND_ANSWER,
    FIND_BY_TURN_KEY,
    FIND_CONVERSATION,
    NO_MESSAGE,
    QUESTION_OF_TURN,
    QUESTIONS_OF_CONVERSATION,
    QUESTIONS_OF_USER,
    RECENT,
    SAVE_SUMMARY,
    SUMMARY,
    USER_CONVERSATIONS,
    recent_parameters,
    summary_of,
    window_of,
)
from app.storage.history import HistoryStore
from app.storage.records import ConversationKey, FoundMessage, StoredMessage, SummaryDraft, TurnStart
from app.storage.search import (
    CANDIDATES_PER_TERM,
    POSTGRES_SEARCH,
    found_messages,
    search_parameters,
    websearch_query,
)

ADVISORY_LOCK = select(func.pg_advisory_xact_lock(bindparam("conversation_id")))


class PostgresHistoryStore(HistoryStore):
    async def recent(
        self, conversation_id: int, token_budget: int, overhead_per_message: int = 0
    ) -> list[StoredMessage]:
        conversation_id = self._current(conversation_id)

        async def read() -> list[StoredMessage]:
            async with self._engine.connect() as connection:
                history, _ = await _window(
                    connection, conversation_id, token_budget, overhead_per_message, self._never_sent
                )
                return history

        return await self._retrying(read, self._log_id(conversation_id))

    async def search(
        self, conversation_id: int, terms: Sequence[str], *, before_turn: int, limit: int
    ) -> list[FoundMessage]:
        """One autocommit statement: no lock, no transaction held open."""
        conversation_id = self._current(conversation_id)
        query = websearch_query(terms)
        if query is None or limit <= 0:
            return []
        parameters = search_parameters(conversation_id, before_turn, limit, self._never_sent)
        parameters.update(query=query, candidates=CANDIDATES_PER_TERM * len(terms))

        async def read() -> list[FoundMessage]:
            async with self._engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                rows = (await autocommit.execute(POSTGRES_SEARCH, parameters)).all()
            return found_messages(rows, limit)

        return await self._retrying(read, self._log_id(conversation_id))

    async def ping(self) -> float:
        started = time.perf_counter()
        async with self._engine.connect() as connection:
            await connection.execute(select(literal_column("1")))
        return time.perf_counter() - started

    async def _probe_write(self, written_at: str) -> None:
        async def probe() -> None:
            async with self._engine.begin() as connection:
                await connection.execute(self._writes.probe_write, {"value": written_at})

        await self._retrying(probe, "(the readiness probe)")

    async def _find_or_create(self, key: ConversationKey) -> int:
        async def find_or_create() -> int:
            async with self._engine.begin() as connection:
                values = {"user_id": key.user_id, "scope": key.scope}
                await connection.execute(self._writes.create_conversation, values)
                return int((await connection.execute(FIND_CONVERSATION, values)).scalar_one())

        return await self._retrying(find_or_create, key.log_id)

    async def _start_turn(
        self, conversation_id: int, user_message: StoredMessage, row: dict, budget: int, overhead: int
    ) -> TurnStart:
        async def locked() -> TurnStart:
            async with self._engine.begin() as connection:
                await connection.execute(ADVISORY_LOCK, {"conversation_id": conversation_id})
                message_id = await self._insert_once(connection, row)
                history, has_older = await _window(
                    connection, conversation_id, budget, overhead, self._never_sent, exclude_id=message_id
                )
            return TurnStart(history, message_id, has_older)

        return await self._retrying(locked, self._log_id(conversation_id))

    async def _finish_turn(self, conversation_id: int, answer: StoredMessage, row: dict, charged: bool) -> bool:
        insert = self._writes.insert_charged_answer if charged else self._writes.insert_answer

        async def insert_answer() -> bool:
            # One statement, no advisory lock: the question's row lock orders it against a reset (_statements).
            async with self._engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                if (await autocommit.execute(insert, row)).scalar() is not None:
                    return True
                found = await autocommit.execute(FIND_ANSWER, row)
                return found.scalar() is not None  # stored by the try whose reply was lost

        return await self._retrying(insert_answer, self._log_id(conversation_id))

    async def _replace_answer(self, conversation_id: int, answer: StoredMessage, row: dict, charged: bool) -> bool:
        insert = self._writes.insert_charged_answer if charged else self._writes.insert_answer

        async def replace_in_one() -> bool:
            parameters = {"conversation_id": conversation_id, "turn_id": row["turn_id"]}
            async with self._engine.begin() as connection:
                await connection.execute(ADVISORY_LOCK, parameters)
                await connection.execute(QUESTION_OF_TURN, parameters)  # ordered against a reset, as delete_turn is
                await connection.execute(ANSWERS_OF_TURN, parameters)
                return (await connection.execute(insert, row)).scalar() is not None

        return await self._retrying(replace_in_one, self._log_id(conversation_id))

    async def _append(self, conversation_id: int, message: StoredMessage, row: dict) -> int:
        async def insert_one() -> int:
            async with self._engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                return await self._insert_once(autocommit, row)

        return await self._retrying(insert_one, self._log_id(conversation_id))

    async def _insert_once(self, connection: AsyncConnection, row: dict) -> int:
        """Insert the message; on a retry whose first try committed (its reply lost), the first copy's id."""
        inserted = (await connection.execute(self._writes.insert_message, row)).scalar()
        if inserted is None:
            inserted = (await connection.execute(FIND_BY_TURN_KEY, row)).scalar_one()
        return int(inserted)

    def _forget_conversation(self, conversation_id: int) -> None:
        """Nothing to drop: every read goes to the database."""

    async def _start_summary(self, conversation_id: int) -> SummaryDraft:
        async def start() -> SummaryDraft:
            async with self._engine.begin() as connection:
                parameters = {"conversation_id": conversation_id}
                await connection.execute(self._writes.create_summary, parameters)
                row = (await connection.execute(SUMMARY, parameters)).one()
            return SummaryDraft(row.version, summary_of(row))

        return await self._retrying(start, self._log_id(conversation_id))

    async def _save_summary(self, conversation_id: int, values: dict) -> bool:
        async def save() -> bool:
            async with self._engine.begin() as connection:
                result = await connection.execute(SAVE_SUMMARY, values)
            return result.rowcount == 1

        return await self._retrying(save, self._log_id(conversation_id))

    async def _forget_user(self, user_id: int) -> tuple[int, list[int]]:
        async def delete_all() -> tuple[int, list[int]]:
            parameters = {"user_id": user_id}
            async with self._engine.begin() as connection:
                conversation_ids = list((await connection.execute(USER_CONVERSATIONS, parameters)).scalars())
                for conversation_id in conversation_ids:  # in id order, as every other holder takes one: no deadlock
                    await connection.execute(ADVISORY_LOCK, {"conversation_id": conversation_id})
                await connection.execute(QUESTIONS_OF_USER, parameters)  # see QUESTIONS_OF_CONVERSATION
                result = await connection.execute(DELETE_MESSAGES_OF_USER, parameters)
                await connection.execute(ERASE_SUMMARIES_OF_USER, parameters)
            return result.rowcount or 0, conversation_ids

        return await self._retrying(delete_all, "#user")

    async def _edit_message(self, conversation_id: int, values: dict) -> bool:
        async def edit() -> bool:
            async with self._engine.begin() as connection:
                result = await connection.execute(EDIT_USER_MESSAGE, values)
            return result.rowcount == 1

        return await self._retrying(edit, self._log_id(conversation_id))

    async def _delete_turn(self, conversation_id: int, turn_id: int) -> int:
        async def delete_one() -> int:
            parameters = {"conversation_id": conversation_id, "turn_id": turn_id}
            async with self._engine.begin() as connection:
                await connection.execute(ADVISORY_LOCK, {"conversation_id": conversation_id})
                await connection.execute(QUESTION_OF_TURN, parameters)  # see QUESTION_OF_TURN
                result = await connection.execute(DELETE_TURN, parameters)
            return result.rowcount or 0

        return await self._retrying(delete_one, self._log_id(conversation_id))

    async def _reset(self, conversation_id: int) -> int:
        async def delete_all() -> int:
            async with self._engine.begin() as connection:
                await connection.execute(ADVISORY_LOCK, {"conversation_id": conversation_id})
                await connection.execute(QUESTIONS_OF_CONVERSATION, {"conversation_id": conversation_id})
                result = await connection.execute(DELETE_CONVERSATION, {"conversation_id": conversation_id})
                await connection.execute(ERASE_SUMMARY, {"of_conversation": conversation_id})
            return result.rowcount or 0

        return await self._retrying(delete_all, self._log_id(conversation_id))


async def _window(
    connection: AsyncConnection,
    conversation_id: int,
    budget: int,
    overhead: int,
    never_sent: str | None,
    exclude_id: int = NO_MESSAGE,
) -> tuple[list[StoredMessage], bool]:
    """The newest messages that fit the budget, and whether older ones are stored."""
    parameters = recent_parameters(conversation_id, budget, overhead, never_sent, exclude_id)
    return window_of((await connection.execute(RECENT, parameters)).all(), budget)
