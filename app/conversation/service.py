"""ConversationService: the one thing every front end calls — respond, reset, status.

A turn: take the conversation's lock, read the newest history that fits the budget, commit the user's
message, stream the answer from the engine chain, commit the complete answer. Nothing half-done is stored:
a turn that fails or is cancelled leaves the user's message and no answer.
"""

from __future__ import annotations

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
from app.conversation.tokens import TokenCounter
from app.conversation.window import (
    PER_MESSAGE_TOKENS,
    Text,
    build_window,
    history_allowance,
)
from app.engines.base import ChatMessage
from app.engines.chain import EngineChain, EngineStarted, EngineStatus
from app.storage.history import ConversationKey, HistoryStore, StoredMessage

CUT_NOTICE = "Your message was very long, so I only read the first part of it."
MAX_AUTHOR_NAME = 64


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    database: str  # where: a file path, or a URL without its password
    database_kind: str  # sqlite | postgresql
    database_ok: bool
    database_round_trip_ms: float | None
    engines: list[EngineStatus]
    uptime_s: float
    token_counter: str


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
        self._counter = counter
        self._system_prompt = system_prompt
        self._budget = history_token_budget
        self._database_description = database_description
        self._locks = KeyedLocks()
        self._started = time.monotonic()

    async def respond(
        self, key: ConversationKey, author: str, text: str, *, prefer: str | None = None
    ) -> AsyncIterator[TurnEvent]:
        """Stream one turn's events. Consume it to the end (or close it): it holds the conversation's lock."""
        text = clean_text(text)
        if not text:
            raise EmptyMessage("nothing to answer")
        async with self._locks.hold(key):  # taken before any await: turns keep their order of arrival
            conversation_id = await self._store.conversation_id(key)
            system = Text.counted(self._system_for(author), self._counter)
            newest = Text.counted(text, self._counter)
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
            notified_cut = False
            async with aclosing(self._chain.stream(build_messages, self._budget, prefer=prefer)) as answer:
                async for item in answer:
                    if isinstance(item, EngineStarted):
                        engine = item.engine
                        if item.replaces_partial:
                            parts.clear()
                        if cut_windows and cut_windows[-1] and not notified_cut:
                            notified_cut = True
                            yield Notice(CUT_NOTICE)
                        yield EngineChosen(item.engine, item.replaces_partial)
                    else:
                        parts.append(item)
                        yield TextChunk(item)
            latency = time.perf_counter() - started
            reply = "".join(parts).replace("\x00", "")  # PostgreSQL text cannot hold NUL
            await self._store.finish_turn(
                conversation_id,
                StoredMessage("assistant", reply, self._counter.count(reply), engine),
                turn_id,
                latency_ms=round(latency * 1000),
            )
            yield FinalReply(reply, engine, latency)

    @property
    def answer_bound_s(self) -> float:
        """The longest the engines can take to answer one turn (the front ends' shutdown grace)."""
        return self._chain.answer_bound_s

    async def reset(self, key: ConversationKey) -> int:
        """Forget the conversation; returns how many messages were forgotten."""
        async with self._locks.hold(key):
            return await self._store.reset(await self._store.conversation_id(key))

    async def history(self, key: ConversationKey) -> list[StoredMessage]:
        return await self._store.all_messages(await self._store.conversation_id(key))

    async def status(self) -> ServiceStatus:
        try:
            round_trip: float | None = await self._store.ping()
        except Exception:  # a status report must not fail because the database did
            round_trip = None
        return ServiceStatus(
            database=self._database_description,
            database_kind=self._store.dialect,
            database_ok=round_trip is not None,
            database_round_trip_ms=None if round_trip is None else round_trip * 1000,
            engines=self._chain.status(),
            uptime_s=time.monotonic() - self._started,
            token_counter=self._counter.name,
        )

    async def close(self) -> None:
        await self._chain.aclose()
        await self._store.close()

    def _system_for(self, author: str) -> str:
        name = " ".join(clean_text(author).split())[:MAX_AUTHOR_NAME]
        return f"{self._system_prompt}\nYou are talking with {name}." if name else self._system_prompt


_INVISIBLE_EDGES = " \t\r\n\u200b\u200c\u200d\u2060\ufeff\u00ad\u3000"


def clean_text(text: str) -> str:
    """Drop control characters and invisible padding at the ends; keep everything a person wrote."""
    kept = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")  # NUL included
    return kept.strip(_INVISIBLE_EDGES)
