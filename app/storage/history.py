"""HistoryStore: a turn's reads and writes of a conversation's history, and forgetting it.

A turn is `start_turn` (read the newest history that fits the budget, commit the user's message) and, once
the answer is complete, `finish_turn` (commit the answer). Messages are ordered by turn — an answer sorts
right after the user message it answers — so two processes answering one conversation at once still store
each answer next to its question. The window query walks an index newest first and stops at the budget, so
a turn does not get slower as the stored history grows.

What every store guarantees, whatever the database does:
- a write retried after a lost reply is stored once (each turn has a key; see `_statements`);
- an answer is stored only while its question is: what a reset (or an operator) erased never comes back;
- a conversation deleted under a running bot is created again on its next turn, not failed until restart;
- a database that cannot be used now (unreachable, locked too long, full, read-only) is `StorageUnavailable`
  with a short cause, and `write_failure` keeps the cause of the last failed write until a write succeeds.

This base knows none of its implementations, SQLite's (group commit in one thread, windows cached in
memory) and PostgreSQL's (several processes: short transactions under a per-conversation advisory lock);
`app.storage.open_history_store` picks one for the engine's database.
"""

from __future__ import annotations

import logging
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Executable, Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.storage._statements import (
    ALL_MESSAGES,
    BEFORE_TURN,
    ENGINE_NAME_LENGTH,
    ENGINE_OF_ANSWER,
    MEMORY_STATS,
    NEWEST_QUESTION,
    SUMMARY,
    TURN_QUESTION,
    UNSUMMARISED,
    charge_parameters,
    exported_message,
    images_of,
    message_row,
    stored_message,
    summary_of,
    utc,
    writes_for,
)
from app.storage.failures import (
    StorageUnavailable,
    driver_error,
    is_foreign_key_violation,
    is_lost_connection,
    short_cause,
    unavailable_cause,
)
from app.storage.records import (
    ConversationKey,
    FoundMessage,
    MemoryStats,
    StoredMessage,
    Summary,
    SummaryDraft,
    TurnContext,
    TurnStart,
    UsageCharge,
    user_log_id,
)

log = logging.getLogger(__name__)
MAX_REMEMBERED_CONVERSATIONS = 100_000  # ids of recently active conversations kept in memory
MAX_REMEMBERED_MOVES = 1000  # deleted conversations' old ids, for turns that were running when it happened
T = TypeVar("T")


class HistoryStore(ABC):
    """The policies both stores share; each implements the abstract steps for its database."""

    def __init__(self, engine: AsyncEngine, *, never_sent_engine: str | None) -> None:
        self._engine = engine
        self._never_sent = never_sent_engine
        self._writes = writes_for(engine.dialect.name)
        self._conversation_ids: OrderedDict[ConversationKey, int] = OrderedDict()  # most recently used last
        self._keys: dict[int, ConversationKey] = {}  # the reverse of _conversation_ids
        self._moved: OrderedDict[int, int] = OrderedDict()  # a deleted conversation's id -> its new id
        self._write_failure: str | None = None

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    @property
    def database(self) -> AsyncEngine:
        """The database engine the store works on (the other stores of the service share it)."""
        return self._engine

    @property
    def write_failure(self) -> str | None:
        """Why the last write failed, until a write succeeds again (None: the last write worked)."""
        return self._write_failure

    async def conversation_id(self, key: ConversationKey) -> int:
        """The id of the key's conversation, created on first use (remembered while it exists)."""
        cached = self._conversation_ids.get(key)
        if cached is None:
            cached = await self._written(key.log_id, lambda: self._find_or_create(key))
            self._remember(key, cached)
        else:
            self._conversation_ids.move_to_end(key)
        return cached

    async def start_turn(
        self, conversation_id: int, user_message: StoredMessage, token_budget: int, overhead_per_message: int = 0
    ) -> TurnStart:
        """Read the newest history that fits the budget, then commit the user's message.

        Returns that history, the new message's id (`finish_turn` takes it so the answer sorts right after it)
        and whether older messages are stored.
        """
        conversation_id = self._current(conversation_id)
        turn_key = uuid.uuid4().hex  # one per turn: every retry of this write reuses it
        overhead = overhead_per_message

        async def write() -> TurnStart:
            row = message_row(conversation_id, user_message, turn_key=turn_key)
            try:
                return await self._start_turn(conversation_id, user_message, row, token_budget, overhead)
            except Exception as error:
                key = self._keys.get(conversation_id)
                if key is None or not is_foreign_key_violation(error):
                    raise
            recreated = await self._recreate(key, conversation_id)
            row = message_row(recreated, user_message, turn_key=turn_key)
            return await self._start_turn(recreated, user_message, row, token_budget, overhead)

        return await self._written(self._log_id(conversation_id), write)

    async def finish_turn(
        self,
        conversation_id: int,
        answer: StoredMessage,
        turn_id: int,
        latency_ms: int | None = None,
        charge: UsageCharge | None = None,
    ) -> None:
        """Commit the complete answer of the turn that `start_turn` opened, unless its question was erased; with a
        `charge`, add its tokens to the user's day in the same transaction (once, however often it is retried)."""
        conversation_id = self._current(conversation_id)
        log_id = self._log_id(conversation_id)
        row, charged = _answer_row(conversation_id, answer, turn_id, latency_ms, charge)
        if not await self._written(log_id, lambda: self._finish_turn(conversation_id, answer, row, charged)):
            log.info("Answer not stored in conversation %s: its question was erased meanwhile", log_id)

    async def append(
        self, conversation_id: int, message: StoredMessage, *, turn_id: int | None = None, latency_ms: int | None = None
    ) -> int:
        """Store one message outside a turn (tools, tests); returns its id once it is committed."""
        conversation_id = self._current(conversation_id)
        row = message_row(conversation_id, message, turn_id=turn_id, turn_key=uuid.uuid4().hex, latency_ms=latency_ms)
        return await self._written(self._log_id(conversation_id), lambda: self._append(conversation_id, message, row))

    async def replace_answer(
        self,
        conversation_id: int,
        answer: StoredMessage,
        turn_id: int,
        latency_ms: int | None = None,
        charge: UsageCharge | None = None,
    ) -> None:
        """Replace the stored answer(s) of the turn `turn_id` with `answer` (it was asked again), in one
        transaction, and with a `charge` add its tokens to the user's day there; nothing is stored when the
        question was erased meanwhile."""
        conversation_id = self._current(conversation_id)
        log_id = self._log_id(conversation_id)
        row, charged = _answer_row(conversation_id, answer, turn_id, latency_ms, charge)
        if not await self._written(log_id, lambda: self._replace_answer(conversation_id, answer, row, charged)):
            log.info("Answer not replaced in conversation %s: its question was erased meanwhile", log_id)

    async def turn_context(
        self, conversation_id: int, turn_id: int, token_budget: int, overhead_per_message: int = 0
    ) -> TurnContext | None:
        """The user message of the turn `turn_id`, the newest messages before it whose token counts (plus the
        overhead each) fit the budget, whether it is the conversation's newest turn, and the engine that answered
        it; None: no such turn is stored (erased). Echo replies are left out of the history, as in `recent`."""
        conversation_id = self._current(conversation_id)
        parameters = {
            "conversation_id": conversation_id,
            "turn_id": turn_id,
            "never_sent": self._never_sent or "",
            "most_rows": token_budget // (overhead_per_message + 1) + 1,
        }

        async def read() -> TurnContext | None:
            async with self._engine.connect() as connection:
                question = (await connection.execute(TURN_QUESTION, parameters)).first()
                if question is None:
                    return None
                newest = (await connection.execute(NEWEST_QUESTION, parameters)).scalar()
                rows = (await connection.execute(BEFORE_TURN, parameters)).all()
                answered_by = (await connection.execute(ENGINE_OF_ANSWER, parameters)).scalar()
            before = [
                StoredMessage(role, content, tokens, engine, images=images_of(images), id=id_, turn=turn)
                for role, content, tokens, engine, id_, turn, images in reversed(rows)
            ]
            more = len(rows) == parameters["most_rows"]
            context = TurnContext(stored_message(question), before, more, newest == turn_id, answered_by)
            history, has_older = context.within(token_budget, overhead_per_message)
            return replace(context, history=history, has_older=has_older)

        return await self._retrying(read, self._log_id(conversation_id))

    async def edit_message(self, conversation_id: int, message_id: int, content: str, token_count: int) -> bool:
        """Replace the text of a stored user message (its author edited it) and its token count; the search index
        follows. False: no such user message is stored (erased meanwhile)."""
        conversation_id = self._current(conversation_id)
        values = {
            "of_conversation": conversation_id,
            "message_id": message_id,
            "new_content": content,
            "new_token_count": token_count,
        }
        return await self._written(self._log_id(conversation_id), lambda: self._edit_message(conversation_id, values))

    async def delete_turn(self, conversation_id: int, turn_id: int) -> int:
        """Erase one turn: the user message `turn_id` (as `start_turn` returned it) and its answer; an answer
        written later is not stored (its question is gone). Returns how many messages were erased."""
        conversation_id = self._current(conversation_id)
        return await self._written(self._log_id(conversation_id), lambda: self._delete_turn(conversation_id, turn_id))

    @abstractmethod
    async def recent(
        self, conversation_id: int, token_budget: int, overhead_per_message: int = 0
    ) -> list[StoredMessage]:
        """The newest messages whose stored token counts (plus an overhead each) fit the budget, oldest first.

        Echo replies are left out: they were never a model's words.
        """

    @abstractmethod
    async def search(
        self, conversation_id: int, terms: Sequence[str], *, before_turn: int, limit: int
    ) -> list[FoundMessage]:
        """The conversation's stored messages older than `before_turn` (turn ids below it: pass the window's
        oldest turn, and nothing found is also in the window) that contain any of `terms`, best match first, one
        per turn, at most `limit`; a found user message brings the answer that followed it.

        `terms` are plain words, never query syntax (whatever they hold is searched as text); which words are
        worth searching for is the caller's choice. Echo replies are never found: they were never a model's words.
        """

    async def reset(self, conversation_id: int) -> int:
        """Forget every message of the conversation; returns how many were forgotten."""
        conversation_id = self._current(conversation_id)
        return await self._written(self._log_id(conversation_id), lambda: self._reset(conversation_id))

    @abstractmethod
    async def ping(self) -> float:
        """Round trip to the database in seconds."""

    async def probe_write(self) -> None:
        """A write that changes nothing a conversation reads, to tell whether writes work now: it sets and clears
        `write_failure` as a turn's writes do (a database that can't be written is StorageUnavailable)."""
        written_at = datetime.now(UTC).isoformat(timespec="seconds")
        await self._written("(the readiness probe)", lambda: self._probe_write(written_at))

    @abstractmethod
    async def _probe_write(self, written_at: str) -> None:
        """Run `Writes.probe_write` with `written_at` as its value, the way the store's other writes run."""

    async def all_messages(self, conversation_id: int) -> list[StoredMessage]:
        """Every stored message of a conversation in turn order, with ids and times (an export, tests, tools)."""
        rows = await self._read(conversation_id, ALL_MESSAGES, {})
        return [exported_message(row) for row in rows]

    async def memory_stats(self, conversation_id: int) -> MemoryStats:
        """How many messages the conversation holds, since when, and its summary."""
        ((count, first_at),) = await self._read(conversation_id, MEMORY_STATS, {})
        return MemoryStats(count, utc(first_at), await self.summary(conversation_id))

    async def summary(self, conversation_id: int) -> Summary | None:
        rows = await self._read(conversation_id, SUMMARY, {})
        return summary_of(rows[0] if rows else None)

    async def unsummarised(
        self, conversation_id: int, *, after_id: int, before_turn: int, limit: int
    ) -> list[StoredMessage]:
        """Messages after `after_id` (the summary's last) and older than `before_turn` (the window's oldest turn),
        at most `limit`, in turn order; never-sent replies left out."""
        parameters = {
            "after_id": after_id,
            "before_turn": before_turn,
            "limit": limit,
            "never_sent": self._never_sent or "",
        }
        rows = await self._read(conversation_id, UNSUMMARISED, parameters)
        return sorted((stored_message(row) for row in rows), key=lambda message: (message.turn, message.id))

    async def start_summary(self, conversation_id: int) -> SummaryDraft:
        """The summary a job starts from, with the version its save must still find (the row is created empty
        when there is none, so a reset that deletes it meanwhile is seen)."""
        conversation_id = self._current(conversation_id)
        return await self._written(self._log_id(conversation_id), lambda: self._start_summary(conversation_id))

    async def save_summary(self, conversation_id: int, version: int, summary: Summary) -> bool:
        """Store the summary if the conversation's summary is still at `version`; False: it was reset, forgotten or
        saved by another job meanwhile, and this one is thrown away."""
        conversation_id = self._current(conversation_id)
        values = {
            "of_conversation": conversation_id,
            "version": version,
            "content": summary.content,
            "token_count": summary.token_count,
            "through_id": summary.through_id,
            "engine": None if summary.engine is None else summary.engine[:ENGINE_NAME_LENGTH],
        }
        return await self._written(self._log_id(conversation_id), lambda: self._save_summary(conversation_id, values))

    async def forget_user(self, user_id: int) -> int:
        """Erase every conversation of the user, in every scope — messages, search index, summaries — in one
        transaction; returns how many messages were erased. The conversations' rows stay, empty: their ids are
        never handed to another conversation."""
        forgotten, conversation_ids = await self._written(
            user_log_id(user_id), lambda: self._forget_user(user_id)
        )
        for conversation_id in conversation_ids:
            self._forget_conversation(conversation_id)
        return forgotten

    async def close(self) -> None:
        await self._engine.dispose()

    # --- the steps each store implements ---------------------------------------------------------------

    @abstractmethod
    async def _find_or_create(self, key: ConversationKey) -> int:
        """The id of the key's conversation, the row created if there is none (a race creates one row)."""

    @abstractmethod
    async def _start_turn(
        self, conversation_id: int, user_message: StoredMessage, row: dict, budget: int, overhead: int
    ) -> TurnStart:
        """Read the window and insert the user's message (row, with its turn key) in one transaction; a retry
        of a write whose reply was lost finds the first copy's id by the key."""

    @abstractmethod
    async def _finish_turn(self, conversation_id: int, answer: StoredMessage, row: dict, charged: bool) -> bool:
        """Insert the answer (row) if its question exists, and if `charged` add its usage (the row's
        `charge_parameters`) in the same transaction; True if it is stored (now or by an earlier try)."""

    @abstractmethod
    async def _replace_answer(self, conversation_id: int, answer: StoredMessage, row: dict, charged: bool) -> bool:
        """Delete the turn's answers and insert the answer (row) if its question exists, in one transaction, and if
        `charged` add its usage there too; True if it is stored."""

    @abstractmethod
    async def _append(self, conversation_id: int, message: StoredMessage, row: dict) -> int:
        """Insert the message (row, with a key of its own) and return its id."""

    @abstractmethod
    async def _reset(self, conversation_id: int) -> int:
        """Delete every message of the conversation; returns how many were deleted."""

    @abstractmethod
    async def _edit_message(self, conversation_id: int, values: dict) -> bool:
        """Run EDIT_USER_MESSAGE with the values; True if a row was updated."""

    @abstractmethod
    async def _delete_turn(self, conversation_id: int, turn_id: int) -> int:
        """Delete the turn's question and answers; returns how many rows went."""

    @abstractmethod
    async def _start_summary(self, conversation_id: int) -> SummaryDraft:
        """Create the empty summary row unless there is one; read it."""

    @abstractmethod
    async def _save_summary(self, conversation_id: int, values: dict) -> bool:
        """Run SAVE_SUMMARY with the values (the conversation among them); True if a row was updated."""

    @abstractmethod
    async def _forget_user(self, user_id: int) -> tuple[int, list[int]]:
        """Delete the user's messages and empty their summaries; returns how many messages went and the ids of
        the user's conversations."""

    @abstractmethod
    def _forget_conversation(self, conversation_id: int) -> None:
        """Drop what the store keeps in memory about a conversation that no longer exists (beyond its id,
        which the base forgets itself)."""

    # --- shared machinery --------------------------------------------------------------------------------

    def _remember(self, key: ConversationKey, conversation_id: int) -> None:
        self._conversation_ids[key] = conversation_id
        self._keys[conversation_id] = key
        if len(self._conversation_ids) > MAX_REMEMBERED_CONVERSATIONS:
            _, evicted = self._conversation_ids.popitem(last=False)
            self._keys.pop(evicted, None)

    def _current(self, conversation_id: int) -> int:
        """The id to use: a turn that started before its conversation was deleted and created again has the old."""
        return self._moved.get(conversation_id, conversation_id)

    def _log_id(self, conversation_id: int) -> str:
        key = self._keys.get(conversation_id)
        return key.log_id if key is not None else f"#{conversation_id}"

    async def _recreate(self, key: ConversationKey, gone_id: int) -> int:
        """The conversation row was deleted (an operator erasing data): create it again, once."""
        log.warning("Conversation %s was deleted while in use; creating it again", key.log_id)
        self._conversation_ids.pop(key, None)
        self._keys.pop(gone_id, None)
        self._forget_conversation(gone_id)
        new_id = await self._find_or_create(key)
        self._remember(key, new_id)
        self._moved[gone_id] = new_id
        if len(self._moved) > MAX_REMEMBERED_MOVES:
            self._moved.popitem(last=False)
        return new_id

    async def _written(self, log_id: str, write: Callable[[], Awaitable[T]]) -> T:
        """Run a write, keeping `write_failure` true: set by a failure, cleared by a success.

        One WARNING per episode (the first failure, or a new cause), one INFO at its end: a caller retrying
        through a long lock would otherwise log a line per attempt.
        """
        try:
            result = await write()
        except Exception as error:
            cause = error.cause if isinstance(error, StorageUnavailable) else short_cause(error)
            level = logging.DEBUG if cause == self._write_failure else logging.WARNING
            log.log(level, "A write to conversation %s failed: %s", log_id, cause)
            self._write_failure = cause
            raise
        if self._write_failure is not None:
            log.info("Writes to the database work again (they failed: %s)", self._write_failure)
            self._write_failure = None
        return result

    async def _read(self, conversation_id: int, statement: Executable, parameters: dict) -> Sequence[Row]:
        """Rows of a read of one conversation on a pool connection (off every write path), retried like any step."""
        conversation_id = self._current(conversation_id)

        async def read() -> Sequence[Row]:
            async with self._engine.connect() as connection:
                result = await connection.execute(statement, {"conversation_id": conversation_id, **parameters})
                return result.all()

        return await self._retrying(read, self._log_id(conversation_id))

    async def _retrying(self, step: Callable[[], Awaitable[T]], log_id: str) -> T:
        """Run a database step; a lost connection is retried once. A database that can't be used now is
        StorageUnavailable with its cause; any other error (a bug, a constraint) is raised as it is."""
        for attempt in (1, 2):
            try:
                return await step()
            except (DBAPIError, OSError) as error:
                if attempt == 1 and is_lost_connection(error):
                    log.warning(
                        "Lost the database connection (%s) in conversation %s; retrying once",
                        type(driver_error(error)).__name__,
                        log_id,
                    )
                    continue
                cause = unavailable_cause(error)
                if cause is None:
                    raise
                raise StorageUnavailable(cause) from error
        raise AssertionError("unreachable")


def _answer_row(
    conversation_id: int, answer: StoredMessage, turn_id: int, latency_ms: int | None, charge: UsageCharge | None
) -> tuple[dict[str, Any], bool]:
    """An answer's row, with its charge's parameters when it is charged, and whether it is."""
    row = message_row(conversation_id, answer, turn_id=turn_id, latency_ms=latency_ms)
    if charge is None:
        return row, False
    return row | charge_parameters(charge), True
