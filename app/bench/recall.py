"""`kortana bench recall`: does what a user said long ago reach the model? (the benchmark of issue 11)

The real ConversationService, on a SQLite file (and on PostgreSQL when DATABASE_URL is one), with a scripted
engine in place of the model: it answers every user turn with the dataset's assistant turn, so what is stored
is the dataset, and it keeps every request it is sent. For each question the dataset's whole conversation is
replayed into a conversation of its own, then the question is asked as the next user turn, and the request the
engine got for it is checked: is the evidence there (the planted message, or the answer that carries the
fact)? Is the fact's value there? For a corrected fact, is the stale value there without the current one? One
question per conversation, so no question pushes another's evidence out.

Leaks: one more conversation is replayed and reset (`service.reset`), then every question is asked in it;
none of those requests may carry any erased text or planted value.

Latency: a question turn's p50/p99 when the database holds 10k, 100k and 1M messages, seeded by bulk SQL
insert: a tenth in this conversation's older history, the rest in other conversations.

Which memory is measured is a `MemoryMode`: settings that the service is opened with. This version has only
the window; a mode whose settings this version does not have is skipped with one line saying so.
"""

from __future__ import annotations

import itertools
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.bench.recall_dataset import (
    FIRST_DAY,
    Dataset,
    Fact,
    Question,
    generate,
    small_talk_line,
)
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
from app.storage import ConversationKey, conversations, create_engine, messages

AUTHOR = "Sam"
ANSWER_DELAY = timedelta(seconds=4)  # the stored answer's time after its question
LATENCY_SIZES = (10_000, 100_000, 1_000_000)
QUICK_LATENCY_SIZES = (10_000, 100_000)
OWN_HISTORY_SHARE = 0.1  # of the seeded messages, the share in the measured conversation's older history
OTHER_CONVERSATION_SIZE = 1_000
SEED_ROWS_PER_STATEMENT = 20_000
SEED_LINES = 5_000  # distinct small-talk lines the seeded history is drawn from
WARM_UP_TURNS = 10
TIMED_TURNS, QUICK_TIMED_TURNS = 200, 50
TARGETS = {"literal": 0.95, "paraphrased": 0.85, "corrected": 0.95}  # issue 11's, evidence present


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
    whatever memory they switch on), with the scripted engine before echo."""
    chain = EngineChain([Tier(engine, settings.brain_timeout_seconds)], EchoEngine(), max_tokens=settings.max_tokens)
    store = open_store(create_engine(url), settings.history_token_budget)
    return service_for(settings, store, chain, token_counter(settings.tokenizer))


# --- the model's stand-in -------------------------------------------------------------------------------


class ScriptedEngine:
    """Answers each user text with its scripted assistant turn and keeps every request it is sent."""

    name = "scripted"

    def __init__(self, script: Mapping[str, str], context_window: int = 8192) -> None:
        self.context_window = context_window
        self.requests: list[list[ChatMessage]] = []
        self._script = script

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        self.requests.append(list(messages))
        newest = messages[-1]["content"]
        if newest not in self._script:
            raise LookupError(f"no scripted answer to {newest[:60]!r}")
        yield self._script[newest]

    async def aclose(self) -> None:
        pass


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


# --- one question, judged ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    question: Question
    evidence: bool  # a text that carries the fact's current value is in the request
    value: bool  # the current value is in the request (the question aside)
    stale_alone: bool  # corrected facts: the stale value is there and the current one is not
    tokens: int  # of the whole request, chat template included
    memory_tokens: int  # of what the request carries beside the bare system prompt and the question
    leaked: bool = False  # asked after a reset: the request carried erased text


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
        memory_tokens=tokens - request_tokens([request[-1]], counter) - bare_system - PER_MESSAGE_TOKENS,
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


# --- the evidence run ----------------------------------------------------------------------------------


async def measure_evidence(url: str, dataset: Dataset, settings: Settings) -> list[Outcome]:
    """Every question of the dataset, each asked after the whole conversation in a conversation of its own;
    then the leak check."""
    engine = ScriptedEngine(dataset.answers)
    service = open_recall_service(url, settings, engine)
    database = create_engine(url)
    counter = token_counter(settings.tokenizer)
    try:
        outcomes = []
        bare_system: int | None = None
        for number, question in enumerate(dataset.questions, start=1):
            key = ConversationKey(number, "recall")
            await replay(service, key, dataset, database)
            if bare_system is None:
                bare_system = counter.count(engine.requests[0][0]["content"])
            engine.requests.clear()
            await say(service, key, question.text)
            outcomes.append(judge(engine.requests[-1], question, counter, bare_system))
            engine.requests.clear()

        erased = ConversationKey(0, "recall-reset")
        await replay(service, erased, dataset, database)
        await service.reset(erased)
        engine.requests.clear()
        leaked = []
        for question in dataset.questions:
            await say(service, erased, question.text)
            leaked.append(leaks(engine.requests[-1], dataset))
        if len(engine.requests) != len(dataset.questions):
            raise RuntimeError("an engine request after the reset was not a question's")
        return [_with_leak(outcome, leak) for outcome, leak in zip(outcomes, leaked, strict=True)]
    finally:
        await service.close()
        await database.dispose()


def _with_leak(outcome: Outcome, leaked: bool) -> Outcome:
    return Outcome(
        outcome.question, outcome.evidence, outcome.value, outcome.stale_alone, outcome.tokens,
        outcome.memory_tokens, leaked,
    )  # fmt: skip


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


async def _conversation_id(connection, key: ConversationKey) -> int | None:  # type: ignore[no-untyped-def]
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


async def seed_stored_messages(url: str, key: ConversationKey, total: int, counter: TokenCounter) -> None:
    """`total` messages of small talk, written directly: a share in `key`'s conversation, dated before the
    dataset's first day (its older history), the rest in other conversations."""
    rng = random.Random(total)
    lines = [small_talk_line(rng) for _ in range(SEED_LINES)]
    counts = [counter.count(line) for line in lines]
    own = int(total * OWN_HISTORY_SHARE)
    others = -(-(total - own) // OTHER_CONVERSATION_SIZE)
    database = create_engine(url)
    try:
        async with database.begin() as connection:
            target = await connection.scalar(
                insert(conversations).values(user_id=key.user_id, scope=key.scope).returning(conversations.c.id)
            )
            await connection.execute(
                insert(conversations),
                [{"user_id": 1_000_000 + n, "scope": "recall-other"} for n in range(others)],
            )
            other_ids = (
                await connection.scalars(select(conversations.c.id).where(conversations.c.scope == "recall-other"))
            ).all()
            owners = [target] * own + [other_ids[i // OTHER_CONVERSATION_SIZE] for i in range(total - own)]
            for start in range(0, total, SEED_ROWS_PER_STATEMENT):
                rows = []
                for i in range(start, min(total, start + SEED_ROWS_PER_STATEMENT)):
                    line = rng.randrange(SEED_LINES)
                    rows.append({
                        "conversation_id": owners[i],
                        "role": "user" if i % 2 == 0 else "assistant",
                        "content": lines[line],
                        "token_count": counts[line],
                        "created_at": FIRST_DAY - timedelta(minutes=own - i if i < own else i),
                    })  # fmt: skip
                await connection.execute(insert(messages), rows)
    finally:
        await database.dispose()


@dataclass(frozen=True, slots=True)
class Latency:
    stored: int
    seeding_s: float
    p50_s: float
    p99_s: float


async def measure_latency(
    url: str, dataset: Dataset, settings: Settings, stored: int, timed_turns: int
) -> Latency:
    """A question turn's latency in a conversation that holds the dataset on top of a seeded older history, in
    a database of `stored` messages."""
    key = ConversationKey(1, "recall-latency")
    started = time.perf_counter()
    await seed_stored_messages(url, key, stored, token_counter(settings.tokenizer))
    seeding = time.perf_counter() - started
    engine = ScriptedEngine(dataset.answers)
    service = open_recall_service(url, settings, engine)
    try:
        for turn in dataset.turns:
            await say(service, key, turn.user)
        questions = [question.text for question in dataset.questions]
        for i in range(WARM_UP_TURNS):
            await say(service, key, questions[i % len(questions)])
        samples = []
        for i in range(timed_turns):
            began = time.perf_counter()
            await say(service, key, questions[i % len(questions)])
            samples.append(time.perf_counter() - began)
            engine.requests.clear()
    finally:
        await service.close()
    return Latency(stored, seeding, percentile(samples, 0.5), percentile(samples, 0.99))


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
EVIDENCE_HEADER = [
    "questions", "count", "evidence present", "current value present", "stale value alone",
    "tokens sent (mean)", "of them memory (mean)", "leaks after reset",
]  # fmt: skip


def evidence_rows(outcomes: Sequence[Outcome]) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, belongs in GROUPS:
        group = [o for o in outcomes if belongs(o.question)]
        if not group:
            continue
        corrected = [o for o in group if o.question.fact.stale_value is not None]
        rows.append([
            name, len(group), _percent(o.evidence for o in group), _percent(o.value for o in group),
            f"{sum(o.stale_alone for o in corrected)} of {len(corrected)}" if corrected else "–",
            round(sum(o.tokens for o in group) / len(group)), round(sum(o.memory_tokens for o in group) / len(group)),
            sum(o.leaked for o in group),
        ])  # fmt: skip
    return rows


def target_lines(outcomes: Sequence[Outcome]) -> list[str]:
    """Issue 11's targets, met or missed, with the figure."""
    lines = []
    for name, target in TARGETS.items():
        group = [o for o in outcomes if name in (o.question.kind, o.question.fact.kind)]
        share = sum(o.evidence for o in group) / len(group)
        lines.append(f"evidence present for {name} questions >= {target:.0%}: {met(share >= target)} ({share:.0%})")
    stale = sum(o.stale_alone for o in outcomes)
    lines.append(f"stale value of a corrected fact never alone: {met(stale == 0)} ({stale})")
    leaked = sum(o.leaked for o in outcomes)
    lines.append(f"0 leaks after reset: {met(leaked == 0)} ({leaked})")
    return lines


def _percent(flags: Iterable[bool]) -> str:
    values = list(flags)
    return f"{100 * sum(values) / len(values):.0f} %"


def describe_dataset(dataset: Dataset, counter: TokenCounter) -> str:
    days = (dataset.turns[-1].at.date() - dataset.turns[0].at.date()).days + 1
    kinds = {kind: sum(f.kind == kind for f in dataset.facts) for kind in dict.fromkeys(f.kind for f in dataset.facts)}
    tokens = sum(counter.count(text) + PER_MESSAGE_TOKENS for text in dataset.texts())
    return (
        f"Dataset: seed {dataset.seed}, {len(dataset.turns)} turns over {days} days ({tokens:,} tokens of history), "
        f"{len(dataset.facts)} facts ({', '.join(f'{n} {kind}' for kind, n in kinds.items())}), "
        f"{len(dataset.questions)} questions (a literal and a paraphrased one per fact)"
    )


async def run_recall_section(settings: Settings, directory: Path, quick: bool) -> None:
    dataset = generate()
    print(f"\n{describe_dataset(dataset, token_counter(settings.tokenizer))}")
    sizes = QUICK_LATENCY_SIZES if quick else LATENCY_SIZES
    timed = QUICK_TIMED_TURNS if quick else TIMED_TURNS
    for mode in MEMORY_MODES:
        try:
            mode_settings = settings_for(mode, settings)
        except ModeUnavailable as unavailable:
            print(f"\n({unavailable}: skipped)")
            continue
        for database_name, fresh_database in fresh_databases(settings.database_url, directory):
            title = f"memory: {mode.name}, {database_name}, budget {mode_settings.history_token_budget:,} tokens"
            async with fresh_database() as url:
                outcomes = await measure_evidence(url, dataset, mode_settings)
            print_table(f"Recall evidence, {title}", EVIDENCE_HEADER, evidence_rows(outcomes))
            print("\n" + "\n".join(f"Target {line}" for line in target_lines(outcomes)))
            rows = []
            for stored in sizes:
                async with fresh_database() as url:
                    latency = await measure_latency(url, dataset, mode_settings, stored, timed)
                rows.append([f"{stored:,}", f"{latency.seeding_s:.1f}", ms(latency.p50_s), ms(latency.p99_s)])
            print_table(
                f"Question turn latency, {title} ({timed} turns each)",
                ["stored messages", "seeding s", "question turn p50 ms", "question turn p99 ms"],
                rows,
            )


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
