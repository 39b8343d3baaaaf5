"""`kortana bench recall`: does what a user said long ago reach the model? (the benchmark of issue 11)

The real ConversationService, on a SQLite file (and on PostgreSQL when DATABASE_URL is one), with a scripted
engine in place of the model (app/bench/recall_engine.py): it answers every user turn with the dataset's
assistant turn, so what is stored is the dataset, writes summaries with an extractive stand-in, and keeps every
request it is sent. Each memory (`MEMORY_MODES`: the window alone, with recall, with recall and the summary) is
measured in the same run, on the same dataset, side by side.

Evidence: the dataset's conversation is replayed once through the service (with the summary on, its background
jobs are waited for), then copied row for row into one conversation per question, and each question is asked
there as the next user turn: one question per conversation, so no question pushes another's evidence out. The
request the engine got for it is judged: is the evidence there (the planted message, or the answer that carries
the fact)? Is the fact's value there? For a corrected fact, is the stale value there without the current one?
How many tokens did the window and the memory block take?

Leaks: the conversation is erased — by a reset; by /forget (every scope of the user); and, with the summary on,
by a reset while a summary job is running (the engine holds the job's request until the reset is done) — then
every question is asked again. No engine request after the erase, turn or summary job, may carry any erased
text or planted value.

Latency: a question turn's p50/p99 in databases of 10k, 100k and 1M messages, seeded by bulk insert (a tenth in
each measured conversation's older history, the rest in other conversations), the window and recall measured in
the same database in alternating blocks, and once more in a short conversation that still fits the window.

The local model: the bundled SmolLM2-135M writes the rolling summary of the dataset's first fallen-out turns
through the summary writer's own prompt, beside the extractive stand-in, and the planted values each kept are
counted (when the local extra is installed; not in a quick run).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.bench.recall_dataset import (
    FIRST_DAY,
    Dataset,
    Fact,
    Question,
    generate,
    small_talk_line,
)
from app.bench.recall_engine import ScriptedEngine
from app.bench.shared import met, migrated_sqlite_database, ms, percentile, print_table, throwaway_database
from app.config import Settings
from app.conversation.events import FinalReply
from app.conversation.service import ConversationService
from app.conversation.setup import open_store, service_for
from app.conversation.tokens import TokenCounter, token_counter
from app.conversation.window import ANSWER_HEADER_TOKENS, PER_MESSAGE_TOKENS, PREAMBLE_TOKENS
from app.engines import ChatMessage
from app.engines.chain import EngineChain, Tier
from app.engines.echo import EchoEngine
from app.storage import ConversationKey, HistoryStore, Summary, conversations, create_engine, messages

AUTHOR = "Sam"
ANSWER_DELAY = timedelta(seconds=4)  # the stored answer's time after its question
LATENCY_SIZES = (10_000, 100_000, 1_000_000)
QUICK_LATENCY_SIZES = (10_000,)
OWN_HISTORY_SHARE = 0.1  # of the seeded messages, the share in each measured conversation's older history
OTHER_CONVERSATION_SIZE = 1_000
SEED_ROWS_PER_STATEMENT = 20_000
SEED_LINES = 5_000  # distinct small-talk lines the seeded history is drawn from
WARM_UP_TURNS = 10
TIMED_TURNS, QUICK_TIMED_TURNS = 200, 40
TIMED_BLOCK = 10  # turns of one memory before the other's: both see the same machine, turn by turn
SHORT_CONVERSATION_TURNS = 10  # a conversation this short fits the window: it is reset before it grows longer
HOLD_WAIT_S = 30.0  # for a summary job to start while the conversation is replayed
RESET_WAIT_S = 10.0  # for a reset while the summary job's request is held
NO_ADDED_COST_S = 0.0001  # "no added cost": recall's p50 within 0.1 ms of the window's
ADDED_TARGET_AT = 1_000_000
ADDED_P50_TARGET_S, ADDED_P99_TARGET_S = 0.003, 0.010
LOCAL_SUMMARY_ROUNDS = 3
STAND_IN_NOTE = (
    "The summary figures are of the benchmark's extractive stand-in (the user's own sentences, newest kept, cut "
    "to SUMMARY_MAX_TOKENS), not of a model; the local model's own summary is measured below."
)


# --- which memory ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemoryMode:
    """A memory to measure: Settings fields and their values. A field this version lacks may only be switched
    off (a feature that does not exist is off); a mode that needs one switched on is unavailable."""

    name: str
    settings: Mapping[str, object]


MEMORY_MODES = (
    MemoryMode("window", {"recall_enabled": False, "summary_enabled": False}),
    MemoryMode("recall", {"recall_enabled": True, "summary_enabled": False}),
    MemoryMode("recall+summary", {"recall_enabled": True, "summary_enabled": True}),
)
LATENCY_MODES = MEMORY_MODES[:2]  # the summary is written in the background: a turn's latency is the same


class ModeUnavailable(Exception):
    """This version has no setting that a memory mode switches on."""


def settings_for(mode: MemoryMode, base: Settings) -> Settings:
    known = type(base).model_fields
    missing = [name.upper() for name, value in mode.settings.items() if name not in known and value is not False]
    if missing:
        what = "a setting" if len(missing) == 1 else "settings"
        raise ModeUnavailable(f"memory {mode.name!r} needs {', '.join(missing)}, {what} this version does not have")
    return base.model_copy(update={name: value for name, value in mode.settings.items() if name in known})


def open_recall_service(url: str, settings: Settings, engine: ScriptedEngine) -> ConversationService:
    """The service of a turn as the bot runs it, on `url`, opened from `settings` (budget, prompt, tokenizer and
    whatever memory they switch on), with the scripted engine before echo; it writes the summaries too."""
    chain = EngineChain([Tier(engine, settings.brain_timeout_seconds)], EchoEngine(), max_tokens=settings.max_tokens)
    store = open_store(create_engine(url), settings.history_token_budget)
    return service_for(settings, store, chain, token_counter(settings.tokenizer), summary_engines=(engine.name,))


def scripted_engine(dataset: Dataset, settings: Settings) -> ScriptedEngine:
    return ScriptedEngine(dataset.answers, token_counter(settings.tokenizer))


async def say(service: ConversationService, key: ConversationKey, text: str) -> None:
    """One user turn, answered by the scripted engine (an answer by echo means the script and the stored history
    went apart: the benchmark stops rather than measure something else)."""
    reply = None
    async with aclosing(service.respond(key, AUTHOR, text)) as events:
        async for event in events:
            if isinstance(event, FinalReply):
                reply = event
    if reply is None or reply.engine != ScriptedEngine.name:
        raise RuntimeError(f"the scripted engine did not answer {text[:60]!r} ({reply.engine if reply else 'no'} did)")


async def settle(service: ConversationService, settings: Settings) -> None:
    """With the summary on, wait until no summary job runs (what a question meets is then the same each run)."""
    if settings.summary_enabled:
        await service.memory_idle()


# --- one question, judged ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    question: Question
    evidence: bool  # a text that carries the fact's current value is in the request
    value: bool  # the current value is in the request (the question aside)
    stale_alone: bool  # corrected facts: the stale value is there and the current one is not
    tokens: int  # of the whole request, chat template included
    window_tokens: int  # of the recent history sent as messages
    memory_tokens: int  # of the memory block (summary, recalled turns) that the system message carries


def holds(value: str, texts: Iterable[str]) -> bool:
    """`value` appears in one of `texts` as a whole word (case aside)."""
    pattern = re.compile(rf"(?<!\w){re.escape(value)}(?!\w)", re.IGNORECASE)
    return any(pattern.search(text) for text in texts)


def request_tokens(request: Sequence[ChatMessage], counter: TokenCounter) -> int:
    messages_tokens = sum(counter.count(message["content"]) + PER_MESSAGE_TOKENS for message in request)
    return PREAMBLE_TOKENS + ANSWER_HEADER_TOKENS + messages_tokens


def judge(request: Sequence[ChatMessage], question: Question, counter: TokenCounter, bare_system: int) -> Outcome:
    """What the request sent for `question` carries; `bare_system` is the tokens of the system prompt of a
    conversation with nothing to remember."""
    if request[-1]["content"] != question.text:
        raise RuntimeError(f"the request for {question.text!r} ends with another message")
    context = [m["content"] for m in request[:-1]]
    fact = question.fact
    value = holds(fact.value, context)
    tokens = request_tokens(request, counter)
    return Outcome(
        question,
        evidence=any(evidence in text for evidence in fact.evidence for text in context),
        value=value,
        stale_alone=fact.stale_value is not None and holds(fact.stale_value, context) and not value,
        tokens=tokens,
        window_tokens=tokens - request_tokens([request[0], request[-1]], counter),
        memory_tokens=max(0, counter.count(request[0]["content"]) - bare_system),
    )


def leaks(request: Sequence[ChatMessage], dataset: Dataset) -> bool:
    """Does the request carry any text of the erased conversation, or any value planted in it?"""
    contents = [m["content"] for m in request]
    erased = dataset.texts()
    if any(text in content for text in erased for content in contents):
        return True
    return any(holds(value, contents) for value in planted_values(dataset.facts))


def planted_values(facts: Sequence[Fact]) -> list[str]:
    return [v for f in facts for v in (f.value, f.stale_value, f.distractor_value) if v is not None]


# --- the evidence and leak run -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeakCheck:
    scenario: str
    requests: int  # engine requests after the erase (turns and summary jobs), each scanned
    leaked: int  # of them carrying erased text or a planted value
    note: str = ""


@dataclass(frozen=True, slots=True)
class MemoryRun:
    outcomes: list[Outcome]
    leak_checks: list[LeakCheck]
    summaries_written: int  # by the stand-in, over the whole run


RESET, FORGET, RESET_DURING_SUMMARY = "after /reset", "after /forget (every scope)", "reset while a summary runs"


async def measure_memory(url: str, dataset: Dataset, settings: Settings) -> MemoryRun:
    """Every question of the dataset, each asked after the whole conversation in a conversation of its own; then
    the leak checks."""
    engine = scripted_engine(dataset, settings)
    service = open_recall_service(url, settings, engine)
    database = create_engine(url)
    copier = open_store(create_engine(url), settings.history_token_budget)
    counter = token_counter(settings.tokenizer)

    async def copy(source: ConversationKey, target: ConversationKey) -> None:
        await copy_conversation(database, copier, source, target)

    try:
        replayed = ConversationKey(0, "recall-replayed")
        await replay(service, replayed, dataset, database)
        await settle(service, settings)
        bare_system = counter.count(engine.turn_requests[0][0]["content"])
        outcomes = []
        for number, question in enumerate(dataset.questions, start=1):
            key = ConversationKey(number, "recall")
            await copy(replayed, key)
            await say(service, key, question.text)
            outcomes.append(judge(engine.turn_requests[-1], question, counter, bare_system))
            await settle(service, settings)

        checks = []
        erased = ConversationKey(1_000, "recall-reset")
        await copy(replayed, erased)
        checks.append(
            await leak_check_after(RESET, engine, service, settings, dataset, [erased], lambda: service.reset(erased))
        )
        scopes = [ConversationKey(2_000, "recall-forget"), ConversationKey(2_000, "recall-forget-elsewhere")]
        for scope in scopes:
            await copy(replayed, scope)
        checks.append(
            await leak_check_after(FORGET, engine, service, settings, dataset, scopes, lambda: service.forget(2_000))
        )
        if settings.summary_enabled:
            checks.append(await _reset_during_summary(engine, service, settings, dataset, database))
        return MemoryRun(outcomes, checks, engine.summaries_written)
    finally:
        await service.close()
        await copier.close()
        await database.dispose()


async def leak_check_after(
    scenario: str,
    engine: ScriptedEngine,
    service: ConversationService,
    settings: Settings,
    dataset: Dataset,
    keys: Sequence[ConversationKey],
    erase: Callable[[], Awaitable[int]],
) -> LeakCheck:
    """`erase()`, then every question asked in each of `keys`: how many engine requests from then on carry erased
    text or a planted value."""
    await settle(service, settings)
    await erase()
    return await _scan_after(scenario, len(engine.requests), engine, service, settings, dataset, keys)


async def _scan_after(
    scenario: str,
    mark: int,
    engine: ScriptedEngine,
    service: ConversationService,
    settings: Settings,
    dataset: Dataset,
    keys: Sequence[ConversationKey],
    note: str = "",
) -> LeakCheck:
    """Every question asked again in each of `keys`; every engine request from `mark` on scanned."""
    for key in keys:
        for question in dataset.questions:
            await say(service, key, question.text)
    await settle(service, settings)
    later = engine.requests[mark:]
    return LeakCheck(scenario, len(later), sum(leaks(request, dataset) for request in later), note)


async def _reset_during_summary(
    engine: ScriptedEngine, service: ConversationService, settings: Settings, dataset: Dataset, database: AsyncEngine
) -> LeakCheck:
    """The conversation is replayed with the engine holding the first summary request it gets; the reset happens
    while that job waits for its answer, which comes only once the reset is done (or, if the reset waits for the
    job, after RESET_WAIT_S: the check then says so)."""
    key = ConversationKey(3_000, "recall-reset-during-summary")
    engine.hold_summaries()
    reset: asyncio.Task[int] | None = None
    note = ""
    try:
        await replay(service, key, dataset, database)
        try:
            await asyncio.wait_for(engine.summary_held.wait(), HOLD_WAIT_S)
        except TimeoutError:
            return LeakCheck(RESET_DURING_SUMMARY, 0, 0, "not run: no summary job started")
        mark = len(engine.requests)
        reset = asyncio.create_task(service.reset(key))
        done, _ = await asyncio.wait({reset}, timeout=RESET_WAIT_S)
        if not done:
            note = f"the reset waited for the held summary job ({RESET_WAIT_S:g} s)"
    finally:
        engine.release_summaries()
        if reset is not None:
            await reset
    return await _scan_after(RESET_DURING_SUMMARY, mark, engine, service, settings, dataset, [key], note)


async def replay(service: ConversationService, key: ConversationKey, dataset: Dataset, database: AsyncEngine) -> None:
    """The dataset's conversation, turn by turn through the service; then its messages get the dataset's dates
    (the store stamps the time of writing)."""
    newest_before = await _newest_id(database, key)
    for turn in dataset.turns:
        await say(service, key, turn.user)
    times = [at for turn in dataset.turns for at in (turn.at, turn.at + ANSWER_DELAY)]
    async with database.begin() as connection:
        conversation_id = await _conversation_id(connection, key)
        ids = (
            await connection.scalars(
                select(messages.c.id)
                .where(messages.c.conversation_id == conversation_id, messages.c.id > newest_before)
                .order_by(func.coalesce(messages.c.turn_id, messages.c.id), messages.c.id)
            )
        ).all()
        if len(ids) != len(times):
            raise RuntimeError(f"replayed {len(times)} messages, found {len(ids)} stored")
        await connection.execute(
            update(messages).where(messages.c.id == bindparam("message_id")).values(created_at=bindparam("at")),
            [{"message_id": message_id, "at": at} for message_id, at in zip(ids, times, strict=True)],
        )


COPIED_COLUMNS = ("role", "content", "token_count", "engine", "latency_ms", "created_at")


async def copy_conversation(
    database: AsyncEngine, store: HistoryStore, source: ConversationKey, target: ConversationKey
) -> None:
    """A new conversation `target` holding what `source` holds: its messages row for row (new ids, the same
    turns, dates and order; the search index follows by the schema's own means), and its summary, saved through
    `store`. What a question then meets is what it would meet after the whole replay."""
    async with database.begin() as connection:
        source_id = await _conversation_id(connection, source)
        target_id = await connection.scalar(
            insert(conversations).values(user_id=target.user_id, scope=target.scope).returning(conversations.c.id)
        )
        rows = (
            await connection.execute(
                select(messages).where(messages.c.conversation_id == source_id).order_by(messages.c.id)
            )
        ).mappings().all()
        turn_keys = {row["turn_key"]: uuid.uuid4().hex for row in rows if row["turn_key"] is not None}
        copies = [
            {
                **{column: row[column] for column in COPIED_COLUMNS},
                "conversation_id": target_id,
                "turn_key": turn_keys.get(row["turn_key"]),
            }
            for row in rows
        ]
        new_ids = (
            await connection.scalars(insert(messages).returning(messages.c.id, sort_by_parameter_order=True), copies)
        ).all()
        new_id = dict(zip((row["id"] for row in rows), new_ids, strict=True))
        answers = [{"message_id": new_id[row["id"]], "turn": new_id[row["turn_id"]]} for row in rows if row["turn_id"]]
        if answers:
            await connection.execute(
                update(messages).where(messages.c.id == bindparam("message_id")).values(turn_id=bindparam("turn")),
                answers,
            )
    summary = await store.summary(await store.conversation_id(source))
    if summary is not None:  # through the store, as a summary job saves one
        copy_id = await store.conversation_id(target)
        draft = await store.start_summary(copy_id)
        copied = Summary(summary.content, summary.token_count, new_id[summary.through_id], summary.engine)
        if not await store.save_summary(copy_id, draft.version, copied):
            raise RuntimeError("the copied summary was not saved")


async def _conversation_id(connection: AsyncConnection, key: ConversationKey) -> int | None:
    return await connection.scalar(
        select(conversations.c.id).where(conversations.c.user_id == key.user_id, conversations.c.scope == key.scope)
    )


async def _newest_id(database: AsyncEngine, key: ConversationKey) -> int:
    async with database.connect() as connection:
        conversation_id = await _conversation_id(connection, key)
        if conversation_id is None:
            return 0
        newest = select(func.max(messages.c.id)).where(messages.c.conversation_id == conversation_id)
        return await connection.scalar(newest) or 0


# --- the latency run -----------------------------------------------------------------------------------


async def seed_stored_messages(url: str, keys: Sequence[ConversationKey], total: int, counter: TokenCounter) -> str:
    """`total` messages of small talk, written directly: OWN_HISTORY_SHARE of them in each of `keys`'
    conversations, dated before the dataset's first day (their older history), the rest in other conversations.
    Returns a word of the measured conversations' seeded history (a search for it must find it)."""
    rng = random.Random(total)
    lines = [small_talk_line(rng) for _ in range(SEED_LINES)]
    counts = [counter.count(line) for line in lines]
    own = int(total * OWN_HISTORY_SHARE)
    rest = total - own * len(keys)
    others = -(-rest // OTHER_CONVERSATION_SIZE)
    database = create_engine(url)
    try:
        async with database.begin() as connection:
            targets = [
                await connection.scalar(
                    insert(conversations).values(user_id=key.user_id, scope=key.scope).returning(conversations.c.id)
                )
                for key in keys
            ]
            if others:
                await connection.execute(
                    insert(conversations),
                    [{"user_id": 1_000_000 + n, "scope": "recall-other"} for n in range(others)],
                )
            other_ids = (
                await connection.scalars(select(conversations.c.id).where(conversations.c.scope == "recall-other"))
            ).all()
            owners = [target for target in targets for _ in range(own)]
            owners += [other_ids[i // OTHER_CONVERSATION_SIZE] for i in range(rest)]
            probe = ""
            for start in range(0, total, SEED_ROWS_PER_STATEMENT):
                rows = []
                for i in range(start, min(total, start + SEED_ROWS_PER_STATEMENT)):
                    line = rng.randrange(SEED_LINES)
                    age = own - i % own if i < own * len(keys) else i  # own history: oldest first, before day one
                    rows.append({
                        "conversation_id": owners[i],
                        "role": "user" if i % 2 == 0 else "assistant",
                        "content": lines[line],
                        "token_count": counts[line],
                        "created_at": FIRST_DAY - timedelta(minutes=age),
                    })  # fmt: skip
                    probe = probe or max(re.findall(r"[a-z]{6,}", lines[line]), key=len, default="")
                await connection.execute(insert(messages), rows)
    finally:
        await database.dispose()
    return probe


async def search_finds(url: str, key: ConversationKey, word: str, budget: int) -> bool:
    """Does the store's own search find `word` in the conversation (bulk-inserted rows are indexed)?"""
    store = open_store(create_engine(url), budget)
    try:
        found = await store.search(await store.conversation_id(key), [word], before_turn=2**62, limit=1)
        return bool(found)
    finally:
        await store.close()


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50_s: float
    p99_s: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Percentiles:
        return cls(percentile(samples, 0.5), percentile(samples, 0.99))


@dataclass(frozen=True, slots=True)
class Latency:
    stored: int
    seeding_s: float
    seeded_rows_found: bool
    long: Mapping[str, Percentiles]  # by memory: a question turn after the dataset, over the seeded history
    short: Mapping[str, Percentiles]  # by memory: a turn of a conversation that fits the window


async def measure_latency(
    url: str, dataset: Dataset, modes: Sequence[tuple[str, Settings]], stored: int, timed_turns: int
) -> Latency:
    """A question turn's latency under each memory, in a database of `stored` messages: in a conversation that
    holds the dataset on top of a seeded older history (one such conversation per memory), and in a short one."""
    budget = modes[0][1].history_token_budget
    long_keys = [ConversationKey(n + 1, "recall-latency") for n in range(len(modes))]
    short_keys = [ConversationKey(n + 1, "recall-short") for n in range(len(modes))]
    started = time.perf_counter()
    probe = await seed_stored_messages(url, long_keys, stored, token_counter(modes[0][1].tokenizer))
    seeding = time.perf_counter() - started
    found = await search_finds(url, long_keys[0], probe, budget)
    engines = [scripted_engine(dataset, settings) for _, settings in modes]
    services = [
        open_recall_service(url, settings, engine) for (_, settings), engine in zip(modes, engines, strict=True)
    ]
    questions = [question.text for question in dataset.questions]
    long: dict[str, list[float]] = {name: [] for name, _ in modes}
    short: dict[str, list[float]] = {name: [] for name, _ in modes}
    try:
        for service, key, engine in zip(services, long_keys, engines, strict=True):
            for turn in dataset.turns:
                await say(service, key, turn.user)
            for i in range(WARM_UP_TURNS):
                await say(service, key, questions[i % len(questions)])
            engine.forget_requests()

        async def timed(samples: list[float], service: ConversationService, key: ConversationKey, i: int) -> None:
            began = time.perf_counter()
            await say(service, key, questions[i % len(questions)])
            samples.append(time.perf_counter() - began)

        for block in range(-(-timed_turns // TIMED_BLOCK)):
            order = list(zip(modes, services, long_keys, short_keys, engines, strict=True))
            for (name, _), service, long_key, short_key, engine in order if block % 2 else reversed(order):
                for i in range(block * TIMED_BLOCK, min(timed_turns, (block + 1) * TIMED_BLOCK)):
                    await timed(long[name], service, long_key, i)
                for i in range(block * TIMED_BLOCK, min(timed_turns, (block + 1) * TIMED_BLOCK)):
                    if i % SHORT_CONVERSATION_TURNS == 0:
                        await service.reset(short_key)
                    await timed(short[name], service, short_key, i)
                engine.forget_requests()
    finally:
        for service in services:
            await service.close()
    return Latency(
        stored,
        seeding,
        found,
        {name: Percentiles.of(samples) for name, samples in long.items()},
        {name: Percentiles.of(samples) for name, samples in short.items()},
    )


# --- the local model's summary ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrittenSummary:
    writer: str
    content: str
    tokens: int
    seconds: float
    covered_values: list[str]  # current values planted in the turns it covers
    kept: list[str]  # of them, in the summary
    stale_kept: list[str]  # values that no longer held by the end of the covered turns, in the summary
    other_kept: list[str]  # planted values of turns it does not cover (impossible unless invented)


async def local_model_summaries(dataset: Dataset, settings: Settings) -> list[WrittenSummary]:
    """The rolling summary of the dataset's first LOCAL_SUMMARY_ROUNDS × SUMMARY_EVERY_TURNS turns, written round
    by round through the summary writer's own prompt and cap, by the bundled local model and by the extractive
    stand-in."""
    from app.conversation.summary import cap_summary, summary_request
    from app.conversation.tokens import EngineTokens
    from app.engines.local import LocalModelEngine
    from app.storage import StoredMessage, Summary

    # A prompt of a whole budget takes the small model a while before its first token on 2 busy cores.
    model = LocalModelEngine(
        n_ctx=settings.local_context_window, temperature=0.0, seed=1234, first_token_timeout_s=600, stall_timeout_s=60
    )
    counter = EngineTokens("local model's tokenizer", model.count_tokens)
    stand_in = ScriptedEngine({}, counter)
    turns = dataset.turns[: LOCAL_SUMMARY_ROUNDS * settings.summary_every_turns]
    stored = []
    for number, turn in enumerate(turns):
        user_id = 2 * number + 1
        stored.append(
            StoredMessage("user", turn.user, counter.count(turn.user), id=user_id, turn=user_id, created_at=turn.at)
        )
        stored.append(
            StoredMessage(
                "assistant", turn.assistant, counter.count(turn.assistant), "x",
                id=user_id + 1, turn=user_id, created_at=turn.at + ANSWER_DELAY,
            )
        )  # fmt: skip
    budget = min(settings.history_token_budget, model.context_window - settings.summary_max_tokens)
    written = []
    await model.start()
    try:
        for name, writer in (("local SmolLM2-135M", model), ("extractive stand-in", stand_in)):
            summary = None
            started = time.perf_counter()
            for _ in range(LOCAL_SUMMARY_ROUNDS):
                after = summary.through_id if summary is not None else 0
                backlog = [m for m in stored if m.id > after][: 4 * settings.summary_every_turns]
                if not backlog:
                    break
                request, included = summary_request(summary, backlog, budget, counter, settings.summary_max_tokens)
                answer = writer.stream(request, settings.summary_max_tokens)
                parts = [part async for part in answer if isinstance(part, str)]  # not the usage after the text
                content = cap_summary("".join(parts), settings.summary_max_tokens, counter)
                summary = Summary(content, counter.count(content), included[-1].id or 0, engine=name)
            seconds = time.perf_counter() - started
            assert summary is not None
            covered = [m.content for m in stored if m.id <= summary.through_id]
            written.append(_judge_summary(name, summary.content, counter, seconds, dataset, covered))
    finally:
        await model.aclose()
    return written


def _judge_summary(
    writer: str, content: str, counter: TokenCounter, seconds: float, dataset: Dataset, covered: Sequence[str]
) -> WrittenSummary:
    """Which planted values the summary of the `covered` texts kept: each fact's value as it stood at the end of
    them (a corrected fact's stale value when its correction is not covered yet)."""
    current: list[str] = []
    stale: list[str] = []
    for fact in dataset.facts:
        corrected = any(evidence in covered for evidence in fact.evidence)
        if corrected:
            current.append(fact.value)
        if fact.stale_value is not None and any(evidence in covered for evidence in fact.stale_evidence):
            (stale if corrected else current).append(fact.stale_value)
    said = [v for v in planted_values(dataset.facts) if holds(v, covered)]
    elsewhere = [v for v in planted_values(dataset.facts) if v not in said]
    return WrittenSummary(
        writer, content, counter.count(content), seconds, current,
        kept=[v for v in current if holds(v, [content])],
        stale_kept=[v for v in stale if holds(v, [content])],
        other_kept=[v for v in elsewhere if holds(v, [content])],
    )  # fmt: skip


# --- the section ---------------------------------------------------------------------------------------

GROUPS: tuple[tuple[str, Callable[[Question], bool]], ...] = (
    ("all", lambda q: True),
    ("literal", lambda q: q.kind == "literal"),
    ("paraphrased", lambda q: q.kind == "paraphrased"),
    ("stated once", lambda q: q.fact.kind == "stated"),
    ("corrected", lambda q: q.fact.kind == "corrected"),
    ("assistant-said", lambda q: q.fact.kind == "assistant"),
    ("in passing", lambda q: q.fact.kind == "in passing"),
)


@dataclass(frozen=True, slots=True)
class Target:
    measure: str
    questions: Callable[[Question], bool]
    flag: Callable[[Outcome], bool]
    share: float


TARGETS = (  # issue 11's
    Target("literal questions: evidence present", lambda q: q.kind == "literal", lambda o: o.evidence, 0.95),
    Target("paraphrased questions: evidence present", lambda q: q.kind == "paraphrased", lambda o: o.evidence, 0.85),
    Target("corrected facts: current value present", lambda q: q.fact.kind == "corrected", lambda o: o.value, 0.95),
)


def _share(outcomes: Sequence[Outcome], belongs: Callable[[Question], bool], flag: Callable[[Outcome], bool]) -> float:
    group = [o for o in outcomes if belongs(o.question)]
    return sum(flag(o) for o in group) / len(group) if group else 0.0


def _percent(share: float) -> str:
    return f"{100 * share:.0f} %"


def _stale_alone(outcomes: Sequence[Outcome]) -> int:
    return sum(o.stale_alone for o in outcomes)


def side_by_side_rows(runs: Mapping[str, MemoryRun]) -> list[list[object]]:
    """One row per measure, one column per memory, and the target."""
    rows: list[list[object]] = []
    for target in TARGETS:
        rows.append([
            target.measure,
            *(_percent(_share(run.outcomes, target.questions, target.flag)) for run in runs.values()),
            f">= {target.share:.0%}",
        ])  # fmt: skip
    corrected = sum(o.question.fact.kind == "corrected" for o in next(iter(runs.values())).outcomes)
    rows.append(
        ["corrected facts: stale value alone", *(f"{_stale_alone(r.outcomes)} of {corrected}" for r in runs.values()),
         "never"]
    )  # fmt: skip
    rows.append(
        ["all questions: evidence present", *(_percent(_share(r.outcomes, lambda q: True, lambda o: o.evidence))
                                              for r in runs.values()), "–"]
    )  # fmt: skip
    for measure, tokens in (
        ("tokens sent (mean)", lambda o: o.tokens),
        ("of them recent window (mean)", lambda o: o.window_tokens),
        ("of them memory: summary and recalled turns (mean)", lambda o: o.memory_tokens),
    ):
        rows.append([measure, *(round(sum(map(tokens, r.outcomes)) / len(r.outcomes)) for r in runs.values()), "–"])
    rows.append(["leaks (all checks)", *(sum(c.leaked for c in r.leak_checks) for r in runs.values()), "0"])
    return rows


def group_rows(runs: Mapping[str, MemoryRun]) -> list[list[object]]:
    """Evidence present / current value present per kind of question and fact, one column per memory."""
    first = next(iter(runs.values())).outcomes
    rows: list[list[object]] = []
    for name, belongs in GROUPS:
        count = sum(belongs(o.question) for o in first)
        cells = [
            f"{_percent(_share(r.outcomes, belongs, lambda o: o.evidence))} / "
            f"{_percent(_share(r.outcomes, belongs, lambda o: o.value))}"
            for r in runs.values()
        ]
        rows.append([name, count, *cells])
    return rows


def leak_rows(runs: Mapping[str, MemoryRun]) -> list[list[object]]:
    scenarios = list(dict.fromkeys(c.scenario for r in runs.values() for c in r.leak_checks))
    rows: list[list[object]] = []
    for scenario in scenarios:
        cells = []
        for run in runs.values():
            check = next((c for c in run.leak_checks if c.scenario == scenario), None)
            if check is None:
                cells.append("–")
            else:
                note = f" ({check.note})" if check.note else ""
                cells.append(f"{check.leaked} of {check.requests} requests{note}")
        rows.append([scenario, *cells])
    return rows


def target_lines(name: str, run: MemoryRun) -> list[str]:
    """Issue 11's targets, met or missed, with the figure, for one memory."""
    lines = []
    for target in TARGETS:
        share = _share(run.outcomes, target.questions, target.flag)
        lines.append(f"{target.measure} >= {target.share:.0%}: {met(share >= target.share)} ({share:.0%})")
    stale = _stale_alone(run.outcomes)
    lines.append(f"stale value of a corrected fact never alone: {met(stale == 0)} ({stale})")
    leaked = sum(check.leaked for check in run.leak_checks)
    lines.append(f"0 leaks: {met(leaked == 0)} ({leaked})")
    return [f"Target ({name}) {line}" for line in lines]


def latency_rows(latencies: Sequence[Latency], names: Sequence[str]) -> list[list[object]]:
    window, recall = names
    rows: list[list[object]] = []
    for latency in latencies:
        stored = f"{latency.stored:,} ({int(latency.stored * OWN_HISTORY_SHARE):,} in the conversation)"
        rows.append([stored, f"{latency.seeding_s:.1f}", "yes" if latency.seeded_rows_found else "NO",
                     *_pair_cells(latency.long[window], latency.long[recall])])  # fmt: skip
    largest = latencies[-1]
    rows.append([f"short conversation that fits the window ({largest.stored:,} stored)", "–", "–",
                 *_pair_cells(largest.short[window], largest.short[recall])])  # fmt: skip
    return rows


def _pair_cells(window: Percentiles, recall: Percentiles) -> list[str]:
    return [
        ms(window.p50_s), ms(window.p99_s), ms(recall.p50_s), ms(recall.p99_s),
        f"{(recall.p50_s - window.p50_s) * 1000:+.2f}", f"{(recall.p99_s - window.p99_s) * 1000:+.2f}",
    ]  # fmt: skip


def latency_target_lines(latencies: Sequence[Latency], names: Sequence[str]) -> list[str]:
    window, recall = names
    lines = []
    at_target = [latency for latency in latencies if latency.stored == ADDED_TARGET_AT]
    if at_target:
        long = at_target[0].long
        added_p50, added_p99 = long[recall].p50_s - long[window].p50_s, long[recall].p99_s - long[window].p99_s
        lines.append(f"recall adds <= 3 ms p50 at 1M stored: {met(added_p50 <= ADDED_P50_TARGET_S)} "
                     f"({added_p50 * 1000:+.2f} ms)")  # fmt: skip
        lines.append(f"recall adds <= 10 ms p99 at 1M stored: {met(added_p99 <= ADDED_P99_TARGET_S)} "
                     f"({added_p99 * 1000:+.2f} ms)")  # fmt: skip
    else:
        lines.append("recall's added cost at 1M stored: not measured in a quick run")
    short = latencies[-1].short
    added = short[recall].p50_s - short[window].p50_s
    lines.append(f"no added cost while the history fits the window (p50 within {NO_ADDED_COST_S * 1000:g} ms): "
                 f"{met(added <= NO_ADDED_COST_S)} ({added * 1000:+.2f} ms)")  # fmt: skip
    lines.append("seeded rows found by the search: " + met(all(latency.seeded_rows_found for latency in latencies)))
    return [f"Target {line}" for line in lines]


def describe_dataset(dataset: Dataset, counter: TokenCounter) -> str:
    days = (dataset.turns[-1].at.date() - dataset.turns[0].at.date()).days + 1
    kinds = {kind: sum(f.kind == kind for f in dataset.facts) for kind in dict.fromkeys(f.kind for f in dataset.facts)}
    tokens = sum(counter.count(text) + PER_MESSAGE_TOKENS for text in dataset.texts())
    return (
        f"Dataset: seed {dataset.seed}, {len(dataset.turns)} turns over {days} days ({tokens:,} tokens of history), "
        f"{len(dataset.facts)} facts ({', '.join(f'{n} {kind}' for kind, n in kinds.items())}), "
        f"{len(dataset.questions)} questions (a literal and a paraphrased one per fact)"
    )


def available_modes(modes: Sequence[MemoryMode], settings: Settings) -> list[tuple[str, Settings]]:
    available = []
    for mode in modes:
        try:
            available.append((mode.name, settings_for(mode, settings)))
        except ModeUnavailable as unavailable:
            print(f"\n({unavailable}: skipped)")
    return available


async def run_recall_section(settings: Settings, directory: Path, quick: bool) -> None:
    dataset = generate()
    print(f"\n{describe_dataset(dataset, token_counter(settings.tokenizer))}")
    modes = available_modes(MEMORY_MODES, settings)
    latency_modes = [(name, mode_settings) for name, mode_settings in modes if name in {m.name for m in LATENCY_MODES}]
    sizes = QUICK_LATENCY_SIZES if quick else LATENCY_SIZES
    timed = QUICK_TIMED_TURNS if quick else TIMED_TURNS
    for database_name, fresh_database in fresh_databases(settings.database_url, directory):
        title = f"{database_name}, budget {settings.history_token_budget:,} tokens"
        runs: dict[str, MemoryRun] = {}
        for name, mode_settings in modes:
            async with fresh_database() as url:
                runs[name] = await measure_memory(url, dataset, mode_settings)
        names = list(runs)
        print_table(f"Recall evidence, {title}: the memories side by side", ["measure", *names, "target"],
                    side_by_side_rows(runs))  # fmt: skip
        print_table(
            f"Evidence present / current value present by kind, {title}", ["questions", "count", *names],
            group_rows(runs),
        )
        print_table(f"Leaks after an erase, {title}", ["erased by", *names], leak_rows(runs))
        print("\n" + "\n".join(line for name, run in runs.items() for line in target_lines(name, run)))
        if any(mode_settings.summary_enabled for _, mode_settings in modes):
            written = sum(run.summaries_written for run in runs.values())
            print(f"\n{STAND_IN_NOTE} Summaries written by the stand-in in this run: {written}.")
        if len(latency_modes) < 2:
            continue
        latencies = []
        for stored in sizes:
            async with fresh_database() as url:
                latencies.append(await measure_latency(url, dataset, latency_modes, stored, timed))
        pair = [name for name, _ in latency_modes]
        print_table(
            f"Question turn latency, {title} ({timed} turns each, the memories in alternating blocks)",
            ["stored messages", "seeding s", "search finds seeded rows",
             f"{pair[0]} p50 ms", f"{pair[0]} p99 ms", f"{pair[1]} p50 ms", f"{pair[1]} p99 ms",
             "added p50 ms", "added p99 ms"],
            latency_rows(latencies, pair),
        )  # fmt: skip
        print("\n" + "\n".join(latency_target_lines(latencies, pair)))
    await run_local_summary_step(dataset, settings, quick)


async def run_local_summary_step(dataset: Dataset, settings: Settings, quick: bool) -> None:
    from app.engines.local import local_extra_installed

    if quick:
        print("\n(the local model's summary: not in a quick run)")
        return
    if not local_extra_installed():
        print("\n(the local model's summary skipped: install the 'local' extra)")
        return
    written = await local_model_summaries(dataset, settings)
    turns = LOCAL_SUMMARY_ROUNDS * settings.summary_every_turns
    print_table(
        f"Rolling summary of the first {turns} turns ({LOCAL_SUMMARY_ROUNDS} rounds, the summary writer's prompt, "
        f"at most {settings.summary_max_tokens} tokens)",
        ["writer", "planted values covered", "kept", "stale kept", "values from turns not covered", "tokens", "s"],
        [
            [w.writer, len(w.covered_values), len(w.kept), len(w.stale_kept), len(w.other_kept), w.tokens,
             f"{w.seconds:.1f}"]
            for w in written
        ],
    )  # fmt: skip
    for w in written:
        print(f"\n{w.writer} kept: {', '.join(w.kept) or 'none'}; missed: "
              f"{', '.join(v for v in w.covered_values if v not in w.kept) or 'none'}")  # fmt: skip
        print(f"\n```\n{w.content}\n```")


FreshDatabase = Callable[[], AbstractAsyncContextManager[str]]


def fresh_databases(database_url: str, directory: Path) -> list[tuple[str, FreshDatabase]]:
    """(name, open) of each database to measure on: a SQLite file, and PostgreSQL when DATABASE_URL is one;
    `open()` gives the URL of a fresh, migrated database, removed afterwards."""
    files = itertools.count()

    @asynccontextmanager
    async def sqlite_file() -> AsyncIterator[str]:
        name = f"recall-{next(files)}.db"
        try:
            yield await migrated_sqlite_database(directory, name)
        finally:
            _remove_database_files(directory, name)

    databases: list[tuple[str, FreshDatabase]] = [("SQLite file", sqlite_file)]
    if database_url.startswith("postgresql"):
        databases.append(("PostgreSQL", lambda: throwaway_database(database_url)))
    return databases


def _remove_database_files(directory: Path, name: str) -> None:
    for path in directory.glob(f"{name}*"):  # the file, its WAL and shared memory
        path.unlink()
