"""ConversationService: the one thing every front end calls — respond, reset, status.

A turn: take the conversation's lock, read the newest history that fits the budget, commit the user's
message, stream the answer from the engine chain, show the complete answer, then commit it. Nothing
half-done is stored: a turn that fails or is cancelled before its answer is complete leaves the user's
message and no answer.

An answer the user has seen is never thrown away: `ShownAnswers` stores it, retried, or keeps it for the
conversation's next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime

from app.config import AllowedModel
from app.conversation.context import Context, Memory, build_context, recall_horizon
from app.conversation.events import (
    EmptyMessage,
    FinalReply,
    Notice,
    NotNewestTurn,
    StoppedBeforeAnswer,
    TextChunk,
    TurnEvent,
    TurnGone,
)
from app.conversation.locks import KeyedLocks, UserGates
from app.conversation.recall_query import recall_terms
from app.conversation.server_settings import Defaults, ServerSettings
from app.conversation.shown_answers import ShownAnswer, ShownAnswers
from app.conversation.stopping import ENDED, STOPPED, StopSignal
from app.conversation.summary import SummaryWriter
from app.conversation.tokens import NeverFailingCounter, TokenCounter
from app.conversation.turn_images import DEFAULT_IMAGE_TOKENS, TurnImage, as_sent, images_tokens, newest_with_images
from app.conversation.turn_text import clean_text
from app.conversation.usage import UsageLedger
from app.conversation.window import PER_MESSAGE_TOKENS, Text, cut_to_fit, defuse_chat_syntax, history_allowance
from app.engines import ECHO, ChainObserver, ChatMessage, EngineStarted, Reasoned, TokenUsage
from app.engines.chain import EngineChain, EngineStatus
from app.storage import (
    AppState,
    ConversationKey,
    FoundMessage,
    HistoryStore,
    ServerSettingsStore,
    StorageUnavailable,
    StoredMessage,
    Summary,
    TurnStart,
    UsageStore,
)

log = logging.getLogger(__name__)
CUT_NOTICE = "Your message was very long, so I only read the first part of it."
MAX_AUTHOR_NAME = 64
# A message with files is stored with at most this share of the history budget (cut, with the marker, and the user
# told), so that the turns after it can still send it beside their own. (The file is still in Discord.)
FILES_STORED_SHARE = 0.5
MAX_CHARS_PER_TOKEN = 16  # more than any text takes (English ~4.9 bytes a token)
PERSONA_ROOM_TOKENS = 256  # what a persona must leave of the history budget: a few turns of conversation


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
    summary_jobs: int = 0  # rolling summaries being written now
    recall_searches: int = 0  # searches of older turns since start
    database_timed_out: bool = False  # the database part did not end within the caller's bound


@dataclass(frozen=True, slots=True)
class MemoryReport:
    messages: int  # stored in the conversation
    first_at: datetime | None  # when the oldest of them was stored
    summary: Summary | None
    recall_enabled: bool
    summary_enabled: bool


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
        app_state: AppState | None = None,
        recall: bool = False,
        memory_share: float = 0.33,
        recall_max_turns: int = 10,
        summaries: SummaryWriter | None = None,
        server_settings: ServerSettings | None = None,
        show_thinking_time: bool = False,
        image_tokens: int = DEFAULT_IMAGE_TOKENS,
    ) -> None:
        """`recall`: search older turns for each new message; `memory_share`: the most of the history budget the
        summary and recalled turns may take; `summaries`: the writer of rolling summaries (None: no summaries);
        `server_settings`: what server admins set, over the environment's defaults (`service_for` builds them from
        the settings; None: the system prompt is the only default); `show_thinking_time`: a reasoning model's
        final reply says how long it thought (`FinalReply.thought_s`); `image_tokens`: what each attached image
        counts in the budget (IMAGE_TOKENS)."""
        self._image_tokens = image_tokens
        self._show_thinking_time = show_thinking_time
        self._recall = recall
        self._memory_share = memory_share
        self._recall_max_turns = recall_max_turns
        self._summaries = summaries
        self.brain_name = brain_name
        self._app_state = app_state
        self._store = store
        self._chain = chain
        self._counter = NeverFailingCounter(counter)
        self._system_prompt = system_prompt
        self._budget = history_token_budget
        self._database_description = database_description
        self._locks = KeyedLocks()
        self._user_gates = UserGates()
        self._shown_answers = ShownAnswers(store, retry_within_s=save_answer_within_s)
        # Counting the system prompt was a large part of a turn's own cost; it changes only with the persona and the
        # author.
        self._system_for = functools.lru_cache(maxsize=1024)(self._counted_system_for)
        self.server_settings = server_settings or ServerSettings(
            ServerSettingsStore(store.database),
            Defaults(system_prompt),
            persona_fits=functools.partial(persona_fits, counter=self._counter, budget=history_token_budget),
        )
        self.usage = UsageLedger(UsageStore(store.database))
        self._started = time.monotonic()
        self._recall_searches = 0

    async def respond(
        self,
        key: ConversationKey,
        author: str,
        text: str,
        *,
        prefer: str | None = None,
        persona: str | None = None,
        model: str | None = None,
        guild_id: int = 0,
        with_files: bool = False,
        on_stored: Callable[[int], object] | None = None,
        images: Sequence[TurnImage] = (),
        stop: StopSignal | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """Stream one turn's events. Consume it to the end (or close it): it holds the conversation's lock, and
        the answer is stored after `FinalReply` is yielded.

        `persona` replaces the system prompt for this turn; `model` (an ALLOWED_MODELS entry, tier:model) is asked
        for on its tier; the answer's tokens are charged to the user in `guild_id` (0: DMs and the terminal);
        `on_stored` is called with the turn's id once the user's message is stored (see `edit_user_message`).
        `with_files`: the text ends with attached files; a turn longer than half the budget is then stored cut (the
        files' end), so that the turns after it can still send it. A message without files is stored whole.
        `images`: attached to the message (it may have no text then); stored by reference, each counted IMAGE_TOKENS,
        and sent with this turn only (app/conversation/turn_images). `stop`: its asker's Stop (the answer ends with
        the text so far, stored as stopped; StoppedBeforeAnswer when no text came yet)."""
        text, newest, stored_cut = self._as_stored(text, with_files, len(images))
        if not text and not images:
            raise EmptyMessage("nothing to answer")
        # The lock is taken before any await: turns keep their order of arrival.
        async with self._locks.hold(key), self._user_gates.turn(key.user_id):
            conversation_id = await self._store.conversation_id(key)
            await self._shown_answers.store_kept(key)
            # What is sent is defused and counted as sent; what is stored is what the user wrote.
            system = self._system_for(persona or self._system_prompt, author)
            allowance = history_allowance(system, newest, self._budget)
            started = await self._store.start_turn(
                conversation_id,
                StoredMessage("user", text, newest.tokens, images=tuple(image.reference() for image in images)),
                allowance,
                PER_MESSAGE_TOKENS,
            )
            if on_stored is not None:
                on_stored(started.turn_id)
            memory = await self._memory_for(conversation_id, key, text, author, started, allowance)
            answer = self._answer(
                key, conversation_id, system, newest, started, memory, images,
                notified_cut=stored_cut, prefer=prefer, model=model, guild_id=guild_id, stop=stop,
            )  # fmt: skip
            if stored_cut:
                yield Notice(CUT_NOTICE)
            async with aclosing(answer) as events:
                async for event in events:
                    yield event

    async def regenerate(
        self,
        key: ConversationKey,
        turn_id: int,
        author: str,
        *,
        another_engine: bool = False,
        prefer: str | None = None,
        persona: str | None = None,
        model: str | None = None,
        guild_id: int = 0,
        stop: StopSignal | None = None,
        resend_images: bool = True,
    ) -> AsyncIterator[TurnEvent]:
        """Answer the stored turn `turn_id` again, with the history before it, and replace its stored answer: the
        same events as `respond` (consume or close it the same way). `another_engine`: the engine that gave the
        stored answer is asked last of the tiers (another healthy tier answers; if none, it still does).
        `resend_images`: the turn's images go again by their stored URL; False (the engines got them inline, and
        their bytes were never kept): as their notes, to every engine.

        Raises TurnGone when the turn was erased (a reset meanwhile wins: nothing of it is sent), and NotNewestTurn
        when a later turn was built on its answer."""
        async with self._locks.hold(key), self._user_gates.turn(key.user_id):
            conversation_id = await self._store.conversation_id(key)
            await self._shown_answers.store_kept(key)
            context = await self._store.turn_context(conversation_id, turn_id, self._budget, PER_MESSAGE_TOKENS)
            if context is None:
                raise TurnGone("the turn was erased")
            if not context.newest:
                raise NotNewestTurn("a later turn follows it")
            question = context.question
            text = question.content
            system = self._system_for(persona or self._system_prompt, author)
            sent = text if resend_images else as_sent(question)
            newest = Text(defuse_chat_syntax(sent), question.token_count)  # counted when stored, images included
            images = [TurnImage(i.name, i.size, i.content_type, i.url) for i in question.images if resend_images]
            allowance = history_allowance(system, newest, self._budget)
            history, has_older = context.within(allowance, PER_MESSAGE_TOKENS)
            started = TurnStart(history, turn_id, has_older)
            memory = await self._memory_for(conversation_id, key, text, author, started, allowance)
            answer = self._answer(
                key, conversation_id, system, newest, started, memory, images,
                prefer=prefer, avoid=context.answered_by if another_engine else None, model=model, guild_id=guild_id,
                stop=stop, replaces=True,
            )  # fmt: skip
            async with aclosing(answer) as events:
                async for event in events:
                    yield event

    async def _answer(
        self,
        key: ConversationKey,
        conversation_id: int,
        system: Text,
        newest: Text,
        started: TurnStart,
        memory: Memory | None,
        images: Sequence[TurnImage],
        *,
        notified_cut: bool = False,
        prefer: str | None = None,
        avoid: str | None = None,
        model: str | None = None,
        guild_id: int = 0,
        stop: StopSignal | None = None,
        replaces: bool = False,
    ) -> AsyncIterator[TurnEvent]:
        """Stream the turn's answer from the chain, then keep and store it (`replaces`: in place of the turn's
        stored answer). A `stop` requested meanwhile ends it with the text so far, stored as stopped."""
        contexts: list[Context] = []

        def build_messages(budget: int) -> list[ChatMessage]:
            contexts.append(build_context(system, started.history, newest, budget, self._counter, memory))
            return newest_with_images(contexts[-1].messages, images)

        began = time.perf_counter()
        engine = ""
        parts: list[str] = []
        reported: TokenUsage | None = None
        thought: Reasoned | None = None
        models = _models_of(model)
        stream = self._chain.stream(build_messages, self._budget, prefer=prefer, models=models, avoid=avoid)
        stop = stop or StopSignal()
        async with aclosing(stream) as items:
            while (item := await stop.next_item(items)) is not ENDED and item is not STOPPED:
                if isinstance(item, TokenUsage):
                    reported = item
                elif isinstance(item, Reasoned):  # the thoughts themselves never reach the service
                    thought = item
                elif isinstance(item, EngineStarted):
                    engine = item.engine
                    if item.replaces_partial:
                        parts.clear()
                    if contexts and contexts[-1].newest_was_cut and not notified_cut:
                        notified_cut = True
                        yield Notice(CUT_NOTICE)
                    yield item
                # The chain hands out valid Unicode; NUL goes here: PostgreSQL text cannot hold it, and
                # what is shown is what is stored.
                elif isinstance(item, str) and (chunk := item.replace("\x00", "")):
                    parts.append(chunk)
                    yield TextChunk(chunk)
        latency = time.perf_counter() - began
        reply = "".join(parts)
        stopped = item is STOPPED
        if stopped and not reply:
            raise StoppedBeforeAnswer("stopped before any text")
        reply_tokens = self._counter.count(defuse_chat_syntax(reply))
        if engine == ECHO:
            cost = 0
        elif reported is not None:
            cost = reported.total
        else:  # the engine did not say: what we counted of its request, and of its answer
            cost = (contexts[-1].tokens if contexts else 0) + reply_tokens
        answer = ShownAnswer(
            conversation_id,
            StoredMessage("assistant", reply, reply_tokens, engine, stopped=stopped),
            started.turn_id,
            round(latency * 1000),
            self.usage.charge(guild_id, key.user_id, cost),
            replaces=replaces,
        )
        self._shown_answers.keep(key, answer)  # from here on the answer is the user's, whatever happens
        try:
            thought_s = thought.seconds if thought is not None and self._show_thinking_time else None
            yield FinalReply(reply, engine, latency, thought_s, stopped=stopped)
        finally:  # also when the front end stops reading right after the answer
            await self._shown_answers.store(key, answer)
            if self._summaries is not None and started.has_older and started.history:
                # Inside the lock: a reset that cancels the conversation's summary job comes after this.
                self._summaries.after_turn(key, conversation_id, started.history[0].turn)

    @property
    def answer_bound_s(self) -> float:
        """The longest the engines can take to answer one turn (the front ends' shutdown grace)."""
        return self._chain.answer_bound_s

    async def reset(self, key: ConversationKey) -> int:
        """Forget the conversation, an answer not stored yet included; returns how many stored messages went.

        A reset the database refuses (StorageUnavailable) forgets nothing: a kept answer stays kept."""
        async with self._locks.hold(key):
            if self._summaries is not None:
                await self._summaries.cancel(key)  # a running job must not send what is erased to an engine
            await self._shown_answers.settle(key)  # a write still running must not land after the delete
            forgotten = await self._store.reset(await self._store.conversation_id(key))
            self._shown_answers.drop(key)
            return forgotten

    async def edit_user_message(
        self, key: ConversationKey, turn_id: int, text: str, *, with_files: bool = False, images: int = 0
    ) -> bool:
        """Replace the stored text of the turn's user message (its author edited it while it was answered; the
        answer being made keeps the text it was asked), stored as `respond` stores it. False: nothing to edit (an
        empty text, an erased turn). It takes no lock: the turn it edits holds the conversation's."""
        text, counted, _ = self._as_stored(text, with_files, images)
        if not text:
            return False
        return await self._store.edit_message(await self._store.conversation_id(key), turn_id, text, counted.tokens)

    def _as_stored(self, text: str, with_files: bool, images: int = 0) -> tuple[str, Text, bool]:
        """A user's text as it is stored (cleaned; with files, within FILES_STORED_SHARE of the budget), the same
        defused and counted as it is sent (with IMAGE_TOKENS for each of its `images`), and whether it was cut."""
        text, counted, cut = self._text_as_stored(text, with_files)
        return text, Text(counted.content, counted.tokens + images_tokens(images, self._image_tokens)), cut

    def _text_as_stored(self, text: str, with_files: bool) -> tuple[str, Text, bool]:
        if with_files:  # beyond this many characters no budget could take the files: the work below stays bounded
            text = text[: MAX_CHARS_PER_TOKEN * self._budget]
        text = clean_text(text)
        counted = Text.counted(defuse_chat_syntax(text), self._counter)
        room = int(self._budget * FILES_STORED_SHARE)
        if not with_files or counted.tokens <= room:
            return text, counted, False
        text = cut_to_fit(text, room, self._counter, defuse_chat_syntax)
        return text, Text.counted(defuse_chat_syntax(text), self._counter), True

    async def withdraw_turn(self, key: ConversationKey, turn_id: int) -> int:
        """Erase one turn whose message its author deleted while it was answered: the message, and its answer
        if one was stored or kept meanwhile (never stored later). Call it after the turn ended, before the
        conversation's next one; returns how many stored messages went."""
        async with self._locks.hold(key):
            await self._shown_answers.settle(key)  # a write still running must not land after the delete
            erased = await self._store.delete_turn(await self._store.conversation_id(key), turn_id)
            self._shown_answers.drop(key, turn_id=turn_id)
            return erased

    async def forget(self, user_id: int) -> int:
        """Erase every conversation of the user, in every scope (/forget); returns how many messages went.

        It waits for the user's running turns (they may still send what they read) and holds new ones back until
        it is done; the user's summary jobs are stopped and none starts meanwhile. Answers kept in memory go too; a
        write of one still running is waited for first, so it cannot land after."""
        paused = self._summaries.paused(user_id) if self._summaries is not None else contextlib.nullcontext()
        async with self._user_gates.erase(user_id), paused:
            for key in self._shown_answers.keys_of(user_id):
                await self._shown_answers.settle(key)
            forgotten = await self._store.forget_user(user_id)
            for key in self._shown_answers.keys_of(user_id):
                self._shown_answers.drop(key)
        return forgotten

    async def export(self, key: ConversationKey) -> list[StoredMessage]:
        """Every stored message of the conversation, in turn order, with its time and the engine that answered."""
        return await self._store.all_messages(await self._store.conversation_id(key))

    async def memory(self, key: ConversationKey) -> MemoryReport:
        """What Kor'tana remembers of the conversation (/memory)."""
        stats = await self._store.memory_stats(await self._store.conversation_id(key))
        return MemoryReport(stats.messages, stats.first_at, stats.summary, self._recall, self._summaries is not None)

    async def memory_idle(self) -> None:
        """Wait until no background summary job runs (tests and benchmarks)."""
        if self._summaries is not None:
            await self._summaries.idle()

    async def status(self, *, probe_writes: bool = False, database_bound_s: float | None = None) -> ServiceStatus:
        """What the service knows now. `probe_writes` (readiness): try a write now, so the write failure reported
        is today's, not the last turn's (a lock taken with no turn since, or released since the last failure).
        `database_bound_s` bounds the database part only: the rest is in memory and always reported."""
        round_trip: float | None = None
        timed_out = False
        try:
            async with asyncio.timeout(database_bound_s):
                round_trip = await self._store.ping()
                if probe_writes:
                    await self._store.probe_write()
        except TimeoutError:
            timed_out = True
        except Exception:  # a status report must not fail because the database did (write_failure says why)
            pass
        write_failure = self._store.write_failure
        return ServiceStatus(
            database=self._database_description,
            database_kind=self._store.dialect,
            database_ok=round_trip is not None and write_failure is None and not timed_out,
            database_round_trip_ms=None if round_trip is None else round_trip * 1000,
            engines=self._chain.status(),
            uptime_s=time.monotonic() - self._started,
            token_counter=self._counter.name,
            database_write_failure=write_failure,
            unsaved_answers=len(self._shown_answers),
            summary_jobs=0 if self._summaries is None else self._summaries.running,
            recall_searches=self._recall_searches,
            database_timed_out=timed_out,
        )

    def watch_engines(self, observer: ChainObserver) -> None:
        """Tell `observer` of every engine call's latency and failure (the operator's metrics)."""
        self._chain.observer = observer

    async def app_state(self, name: str) -> str | None:
        """A value a front end kept about its own set-up (e.g. the slash commands it synced), or None; None too
        for a service opened without a state store. A database that fails is StorageUnavailable."""
        return None if self._app_state is None else await self._app_state.get(name)

    async def keep_app_state(self, name: str, value: str) -> None:
        """Keep a front end's value across restarts (a service without a state store keeps nothing)."""
        if self._app_state is not None:
            await self._app_state.put(name, value)

    async def close(self) -> None:
        await self.server_settings.aclose()
        await self._shown_answers.store_all()
        if self._summaries is not None:
            await self._summaries.aclose()
        await self._chain.aclose()
        await self._store.close()

    async def _memory_for(
        self,
        conversation_id: int,
        key: ConversationKey,
        text: str,
        author: str,
        started: TurnStart,
        allowance: int,
    ) -> Memory | None:
        """What the turn may send beyond its window: the summary and the older turns a search found. Nothing is
        read while the whole conversation fits the window; a database that fails here costs the turn its memory,
        never its answer."""
        if not started.has_older or not (self._recall or self._summaries is not None):
            return None
        terms = recall_terms(text) if self._recall else []
        self._recall_searches += bool(terms)
        horizon = recall_horizon(started.history, allowance, self._memory_share) or started.turn_id
        try:
            found, summary = await asyncio.gather(
                self._store.search(conversation_id, terms, before_turn=horizon, limit=self._recall_max_turns)
                if terms
                else _nothing_found(),
                self._store.summary(conversation_id) if self._summaries is not None else _no_summary(),
            )
        except StorageUnavailable as error:
            log.warning(
                "Conversation %s: no memory for this turn, the database is unavailable (%s)", key.log_id, error.cause
            )
            return None
        if not found and summary is None:
            return None
        return Memory(summary, found, self._memory_share, _display_name(author) or "user")

    def _counted_system_for(self, prompt: str, author: str) -> Text:
        return Text.counted(defuse_chat_syntax(system_message(prompt, author)), self._counter)


def system_message(prompt: str, author: str) -> str:
    """The system prompt (or a server's persona) of a turn with `author`."""
    name = _display_name(author)
    return f"{prompt}\nYou are talking with {name}." if name else prompt


def persona_fits(persona: str, *, counter: TokenCounter, budget: int) -> bool:
    """Whether a persona as the system prompt, with the longest author name, leaves room for a conversation in the
    history budget."""
    longest = Text.counted(defuse_chat_syntax(system_message(persona, "x" * MAX_AUTHOR_NAME)), counter)
    return longest.tokens + PERSONA_ROOM_TOKENS <= budget


def _models_of(model: str | None) -> dict[str, str] | None:
    if model is None:
        return None
    chosen = AllowedModel.parse(model)
    return {chosen.tier: chosen.model}


def _display_name(author: str) -> str:
    return " ".join(clean_text(author).split())[:MAX_AUTHOR_NAME]


async def _nothing_found() -> list[FoundMessage]:
    return []


async def _no_summary() -> Summary | None:
    return None
