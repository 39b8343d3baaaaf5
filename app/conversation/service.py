"""ConversationService: the one thing every front end calls — respond, reset, status.

A turn: take the conversation's lock, read the newest history that fits the budget, commit the user's
message, stream the answer from the engine chain, show the complete answer, then commit it. Nothing
half-done is stored: a turn that fails or is cancelled before its answer is complete leaves the user's
message and no answer.

An answer the user has seen is never thrown away: its write is retried with back-off for up to
`save_answer_within_s`; if the database still refuses it, the answer stays in memory and is written first at
the conversation's next turn (before that turn's message, so the history keeps its order) or when the
service closes. A reset drops it: what a user erases never comes back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import unicodedata
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from app.conversation.events import (
    EmptyMessage,
    EngineChosen,
    FinalReply,
    Notice,
    TextChunk,
    TurnEvent,
)
from app.conversation.locks import KeyedLocks
from app.conversation.tokens import NeverFailingCounter, TokenCounter
from app.conversation.window import (
    PER_MESSAGE_TOKENS,
    Text,
    build_window,
    defuse_chat_syntax,
    history_allowance,
)
from app.engines.base import ChatMessage
from app.engines.chain import EngineChain, EngineStarted, EngineStatus
from app.safe_text import valid_unicode
from app.storage.history import ConversationKey, HistoryStore, StorageUnavailable, StoredMessage

log = logging.getLogger(__name__)

CUT_NOTICE = "Your message was very long, so I only read the first part of it."
MAX_AUTHOR_NAME = 64
FIRST_SAVE_RETRY_S = 0.1  # back-off between attempts to store a shown answer: 0.1, 0.2, 0.4 … 2 s
LONGEST_SAVE_RETRY_S = 2.0


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    database: str  # where: a file path, or a URL without its password
    database_kind: str  # sqlite | postgresql
    database_ok: bool  # reachable and writable
    database_round_trip_ms: float | None
    engines: list[EngineStatus]
    uptime_s: float
    token_counter: str
    database_write_failure: str | None = None  # why writes fail (e.g. "database or disk is full"); None: they work
    unsaved_answers: int = 0  # answers users saw that wait in memory to be stored


@dataclass(slots=True)
class _UnsavedAnswer:
    """A shown answer not stored yet, and its latest write (which may still commit after its turn was cancelled)."""

    conversation_id: int
    message: StoredMessage
    turn_id: int
    latency_ms: int
    write: asyncio.Task[None] | None = None


class ConversationService:
    def __init__(
        self,
        store: HistoryStore,
        chain: EngineChain,
        counter: TokenCounter,
        *,
        system_prompt: str,
        history_token_budget: int,
        database_description: str = "",
        brain_name: str | None = None,
        save_answer_within_s: float = 30.0,
    ) -> None:
        self.brain_name = brain_name
        self._save_answer_within_s = save_answer_within_s  # how long a shown answer's write is retried
        self._store = store
        self._chain = chain
        self._counter = NeverFailingCounter(counter)
        self._system_prompt = system_prompt
        self._budget = history_token_budget
        self._database_description = database_description
        self._locks = KeyedLocks()
        self._unsaved: dict[ConversationKey, _UnsavedAnswer] = {}
        self._started = time.monotonic()

    async def respond(
        self, key: ConversationKey, author: str, text: str, *, prefer: str | None = None
    ) -> AsyncIterator[TurnEvent]:
        """Stream one turn's events. Consume it to the end (or close it): it holds the conversation's lock, and
        the answer is stored after `FinalReply` is yielded."""
        text = clean_text(text)
        if not text:
            raise EmptyMessage("nothing to answer")
        async with self._locks.hold(key):  # taken before any await: turns keep their order of arrival
            conversation_id = await self._store.conversation_id(key)
            await self._write_unsaved_first(key)
            # What is sent is defused and counted as sent; what is stored is what the user wrote.
            system = Text.counted(defuse_chat_syntax(self._system_for(author)), self._counter)
            newest = Text.counted(defuse_chat_syntax(text), self._counter)
            history, turn_id = await self._store.start_turn(
                conversation_id,
                StoredMessage("user", text, newest.tokens),
                history_allowance(system, newest, self._budget),
                PER_MESSAGE_TOKENS,
            )

            cut_windows: list[bool] = []

            def build_messages(budget: int) -> list[ChatMessage]:
                window = build_window(system, history, newest, budget, self._counter)
                cut_windows.append(window.newest_was_cut)
                return window.messages

            started = time.perf_counter()
            engine = ""
            parts: list[str] = []
            chunks = _ValidChunks()
            notified_cut = False
            async with aclosing(self._chain.stream(build_messages, self._budget, prefer=prefer)) as answer:
                async for item in answer:
                    if isinstance(item, EngineStarted):
                        engine = item.engine
                        if item.replaces_partial:
                            parts.clear()
                            chunks.drop()
                        if cut_windows and cut_windows[-1] and not notified_cut:
                            notified_cut = True
                            yield Notice(CUT_NOTICE)
                        yield EngineChosen(item.engine, item.replaces_partial)
                    elif chunk := chunks.feed(item):
                        parts.append(chunk)
                        yield TextChunk(chunk)
            if tail := chunks.flush():
                parts.append(tail)
                yield TextChunk(tail)
            latency = time.perf_counter() - started
            reply = "".join(parts)
            unsaved = _UnsavedAnswer(
                conversation_id,
                StoredMessage("assistant", reply, self._counter.count(defuse_chat_syntax(reply)), engine),
                turn_id,
                round(latency * 1000),
            )
            self._unsaved[key] = unsaved  # from here on, the answer is the user's: kept until it is stored
            try:
                yield FinalReply(reply, engine, latency)
            finally:  # also when the front end stops reading right after the answer
                await self._save_answer(key, unsaved)

    @property
    def answer_bound_s(self) -> float:
        """The longest the engines can take to answer one turn (the front ends' shutdown grace)."""
        return self._chain.answer_bound_s

    async def reset(self, key: ConversationKey) -> int:
        """Forget the conversation, an answer not stored yet included; returns how many stored messages went."""
        async with self._locks.hold(key):
            unsaved = self._unsaved.pop(key, None)
            if unsaved is not None and unsaved.write is not None:
                await asyncio.wait([unsaved.write])  # a write still running must not land after the delete
            return await self._store.reset(await self._store.conversation_id(key))

    async def history(self, key: ConversationKey) -> list[StoredMessage]:
        return await self._store.all_messages(await self._store.conversation_id(key))

    async def status(self) -> ServiceStatus:
        try:
            round_trip: float | None = await self._store.ping()
        except Exception:  # a status report must not fail because the database did
            round_trip = None
        write_failure = self._store.write_failure
        return ServiceStatus(
            database=self._database_description,
            database_kind=self._store.dialect,
            database_ok=round_trip is not None and write_failure is None,
            database_round_trip_ms=None if round_trip is None else round_trip * 1000,
            engines=self._chain.status(),
            uptime_s=time.monotonic() - self._started,
            token_counter=self._counter.name,
            database_write_failure=write_failure,
            unsaved_answers=len(self._unsaved),
        )

    async def close(self) -> None:
        await self._write_unsaved_at_close()
        await self._chain.aclose()
        await self._store.close()

    def _system_for(self, author: str) -> str:
        name = " ".join(clean_text(author).split())[:MAX_AUTHOR_NAME]
        return f"{self._system_prompt}\nYou are talking with {name}." if name else self._system_prompt

    # -- storing shown answers --------------------------------------------------------------------------

    async def _save_answer(self, key: ConversationKey, unsaved: _UnsavedAnswer) -> None:
        """Store a shown answer, retrying with back-off; never raises (but for cancellation): an answer the
        database keeps refusing stays in memory for the conversation's next turn."""
        deadline = time.monotonic() + self._save_answer_within_s
        delay = FIRST_SAVE_RETRY_S
        attempts = 0
        while True:
            attempts += 1
            try:
                await self._write(key, unsaved)
            except StorageUnavailable as error:
                if time.monotonic() + delay <= deadline:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, LONGEST_SAVE_RETRY_S)
                    continue
                log.error(
                    "Conversation %s: could not store the answer after %d attempts in %g s (%s); "
                    "it is kept in memory and written before the conversation's next turn",
                    key.log_id, attempts, self._save_answer_within_s, _cause(error),
                )  # fmt: skip
            except Exception as error:  # not a database that is away: retrying would not help
                self._forget_unsaved(key, unsaved)
                log.error("Conversation %s: the answer cannot be stored and is lost (%s)", key.log_id, _cause(error))
            else:
                if attempts > 1:
                    log.info("Conversation %s: answer stored at attempt %d", key.log_id, attempts)
            return

    async def _write_unsaved_first(self, key: ConversationKey) -> None:
        """Store the answer kept from the conversation's last turn before anything of this turn."""
        unsaved = self._unsaved.get(key)
        if unsaved is None:
            return
        try:
            await self._write(key, unsaved)
        except StorageUnavailable as error:
            log.error("Conversation %s: the answer kept from the last turn still cannot be stored (%s)",
                      key.log_id, _cause(error))  # fmt: skip
            raise
        except Exception as error:
            self._forget_unsaved(key, unsaved)
            log.error("Conversation %s: the answer kept from the last turn is lost (%s)", key.log_id, _cause(error))
        else:
            log.info("Conversation %s: the answer kept from the last turn is stored", key.log_id)

    async def _write_unsaved_at_close(self) -> None:
        for key, unsaved in list(self._unsaved.items()):
            try:
                await self._write(key, unsaved)
            except Exception as error:
                log.error("Conversation %s: an answer not stored yet is lost at close (%s)", key.log_id, _cause(error))

    async def _write(self, key: ConversationKey, unsaved: _UnsavedAnswer) -> None:
        """One attempt to store the answer, or the outcome of the attempt still running.

        Shielded: a write the turn's cancellation abandoned may still commit, and must not be written twice.
        """
        write = unsaved.write
        if write is None or (write.done() and (write.cancelled() or write.exception() is not None)):
            write = unsaved.write = asyncio.ensure_future(
                self._store.finish_turn(
                    unsaved.conversation_id, unsaved.message, unsaved.turn_id, latency_ms=unsaved.latency_ms
                )
            )
            write.add_done_callback(functools.partial(self._write_settled, key, unsaved))
        await asyncio.shield(write)

    def _write_settled(self, key: ConversationKey, unsaved: _UnsavedAnswer, write: asyncio.Task[None]) -> None:
        if not write.cancelled() and write.exception() is None:  # also retrieves a failure nobody awaits
            self._forget_unsaved(key, unsaved)

    def _forget_unsaved(self, key: ConversationKey, unsaved: _UnsavedAnswer) -> None:
        if self._unsaved.get(key) is unsaved:
            del self._unsaved[key]


class _ValidChunks:
    """Streamed text made valid Unicode chunk by chunk; a high surrogate ending a chunk waits for its other half
    (servers split an emoji's surrogate pair across two chunks). NUL goes too: PostgreSQL text cannot hold it,
    and what is shown is what is stored."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, chunk: str) -> str:
        chunk, self._held = self._held + chunk, ""
        if chunk and "\ud800" <= chunk[-1] <= "\udbff":
            chunk, self._held = chunk[:-1], chunk[-1]
        return valid_unicode(chunk).replace("\x00", "")

    def flush(self) -> str:
        held, self._held = self._held, ""
        return valid_unicode(held)

    def drop(self) -> None:
        self._held = ""


def _cause(error: BaseException) -> str:
    """A failure in words fit for a log: the store's short cause, else the error's type and code — never a
    driver's message, which can quote SQL or a row's values."""
    if isinstance(error, StorageUnavailable):
        return str(getattr(error, "cause", None) or error)
    driver = getattr(error, "orig", None) or error
    code = getattr(driver, "sqlstate", None) or getattr(driver, "sqlite_errorname", None)
    return f"{type(driver).__name__} {code}" if code else type(driver).__name__


_INVISIBLE_EDGES = " \t\r\n\u200b\u200c\u200d\u2060\ufeff\u00ad\u3000"
# Characters that show nothing on their own: Unicode's default-ignorable code points (besides category Cf)
# and the blanks that render as empty space (Hangul fillers, the Braille blank).
_SHOW_NOTHING = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u2800\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))  # variation selectors
    + "".join(map(chr, range(0xFFF0, 0xFFF9)))
)


def clean_text(text: str) -> str:
    """Valid Unicode without control characters or invisible padding at the ends; keep everything a person
    wrote. A text of nothing visible is empty."""
    text = valid_unicode(text)
    kept = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")  # NUL included
    kept = kept.strip(_INVISIBLE_EDGES)
    return kept if any(_shows_something(ch) for ch in kept) else ""


def _shows_something(ch: str) -> bool:
    if ch.isspace() or ch in _SHOW_NOTHING:
        return False
    if "\U000e0000" <= ch <= "\U000e0fff":
        return False  # tags and the variation selectors supplement
    return unicodedata.category(ch) != "Cf"
