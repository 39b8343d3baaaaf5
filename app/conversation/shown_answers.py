"""Answers a user has seen, until the database has them: an answer that was shown is never thrown away.

Its write is retried with back-off, and no attempt starts after `retry_within_s`. An answer the database
still refuses stays in memory, one per conversation, and is written first at the conversation's next turn
(under its lock, before that turn's message, so the history keeps its order) or at close. A reset drops it
once the reset is done: what a user erases never comes back.

Each write runs as its own task, shielded from the turn's cancellation: a write abandoned halfway may commit
anyway, and the store's bookkeeping after the commit (SQLite's cached windows) must still happen. The next
attempt awaits that task instead of writing again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from app.storage import ConversationKey, HistoryStore, StorageUnavailable, StoredMessage, UsageCharge, short_cause

log = logging.getLogger(__name__)

FIRST_RETRY_S = 0.1  # back-off between attempts: 0.1, 0.2, 0.4 … 2 s
LONGEST_RETRY_S = 2.0


@dataclass(slots=True)
class ShownAnswer:
    conversation_id: int
    message: StoredMessage
    turn_id: int
    latency_ms: int
    charge: UsageCharge | None = None  # what it cost its user, added in the answer's own write
    replaces: bool = False  # the turn was asked again: this answer takes the place of its stored one
    write: asyncio.Task[None] | None = None  # the latest attempt, which may outlive a cancelled turn


class ShownAnswers:
    """The answers of the service's conversations that were shown and are not stored yet."""

    def __init__(self, store: HistoryStore, retry_within_s: float) -> None:
        self._store = store
        self._retry_within_s = retry_within_s
        self._kept: dict[ConversationKey, ShownAnswer] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, key: ConversationKey, answer: ShownAnswer) -> None:
        """Keep the answer about to be shown until it is stored, whatever happens to its turn (`close` writes it
        too)."""
        self._kept[key] = answer

    async def store(self, key: ConversationKey, answer: ShownAnswer) -> None:
        """Store a kept answer, retrying while the database is unavailable; never raises but for cancellation.
        Whatever stops it early, the answer stays kept for the conversation's next turn."""
        deadline = time.monotonic() + self._retry_within_s
        delay = FIRST_RETRY_S
        attempts = 1
        while True:
            try:
                stored = await self._write(key, answer)
            except StorageUnavailable as error:
                if time.monotonic() + delay <= deadline:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, LONGEST_RETRY_S)
                    attempts += 1
                    continue
                log.error(
                    "Conversation %s: could not store the answer after %d attempts in %g s (%s); "
                    "it is kept in memory and written before the conversation's next turn",
                    key.log_id, attempts, self._retry_within_s, error.cause,
                )  # fmt: skip
            else:
                if stored and attempts > 1:
                    log.info("Conversation %s: answer stored at attempt %d", key.log_id, attempts)
            return

    async def store_kept(self, key: ConversationKey) -> None:
        """Store the answer kept from the conversation's last turn, if any, before anything of this turn.

        Raises StorageUnavailable while the database still refuses it: the turn must not go on, or its
        message would be stored before the answer to the one before."""
        answer = self._kept.get(key)
        if answer is None:
            return
        try:
            stored = await self._write(key, answer)
        except StorageUnavailable as error:
            log.error(
                "Conversation %s: the answer kept from the last turn still cannot be stored (%s)",
                key.log_id, error.cause,
            )  # fmt: skip
            raise
        if stored:
            log.info("Conversation %s: the answer kept from the last turn is stored", key.log_id)

    async def settle(self, key: ConversationKey) -> None:
        """Wait for a write of the conversation's answer still running (one a cancelled turn left behind)."""
        answer = self._kept.get(key)
        if answer is not None and answer.write is not None:
            await asyncio.wait([answer.write])

    def drop(self, key: ConversationKey, *, turn_id: int | None = None) -> None:
        """Forget the conversation's kept answer (its conversation was reset), or only the answer of `turn_id`
        (that turn was erased)."""
        kept = self._kept.get(key)
        if kept is not None and (turn_id is None or kept.turn_id == turn_id):
            del self._kept[key]

    def keys_of(self, user_id: int) -> list[ConversationKey]:
        """The conversations of a user that have a kept answer."""
        return [key for key in self._kept if key.user_id == user_id]

    async def store_all(self) -> None:
        """At close: one last attempt for every kept answer."""
        for key, answer in list(self._kept.items()):
            try:
                await self._write(key, answer)
            except StorageUnavailable as error:
                log.error("Conversation %s: an answer not stored yet is lost at close (%s)", key.log_id, error.cause)

    async def _write(self, key: ConversationKey, answer: ShownAnswer) -> bool:
        """One attempt, or the outcome of the one still running. True: stored, and no longer kept; False: it
        can never be stored (not a database that is away, so no retry would help) and is lost.

        Raises StorageUnavailable, and the answer stays kept."""
        write = answer.write
        if write is None or (write.done() and (write.cancelled() or write.exception() is not None)):
            store = self._store.replace_answer if answer.replaces else self._store.finish_turn
            write = answer.write = asyncio.create_task(
                store(
                    answer.conversation_id,
                    answer.message,
                    answer.turn_id,
                    latency_ms=answer.latency_ms,
                    charge=answer.charge,
                )
            )
            write.add_done_callback(lambda done: self._forget_if_stored(key, answer, done))
        try:
            await asyncio.shield(write)
        except StorageUnavailable:
            raise
        except Exception as error:
            self._forget(key, answer)
            log.error("Conversation %s: the answer cannot be stored and is lost (%s)", key.log_id, short_cause(error))
            return False
        self._forget(key, answer)  # the write may have settled before this turn awaited it (at close)
        return True

    def _forget_if_stored(self, key: ConversationKey, answer: ShownAnswer, write: asyncio.Task[None]) -> None:
        if not write.cancelled() and write.exception() is None:  # also retrieves a failure nobody awaits
            self._forget(key, answer)

    def _forget(self, key: ConversationKey, answer: ShownAnswer) -> None:
        if self._kept.get(key) is answer:  # not a newer answer of the same conversation
            del self._kept[key]

