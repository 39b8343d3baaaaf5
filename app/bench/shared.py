"""What the benchmarks share: tables and figures, the machine, a migrated database with seeded history, a service
on an instant engine and its timed turns, logging while measuring, and the test kit some sections drive.

Every benchmark module imports this one; this one imports no benchmark.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import platform
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, aclosing, asynccontextmanager, contextmanager
from pathlib import Path

import huggingface_hub.constants
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.bench.instant_engine import InstantEngine
from app.config import DEFAULT_SYSTEM_PROMPT
from app.conversation.service import ConversationService
from app.conversation.setup import open_store
from app.conversation.tokens import EstimatedTokens
from app.engines import Engine
from app.engines.chain import EngineChain, Tier
from app.engines.echo import EchoEngine
from app.storage import ConversationKey, conversations, create_engine, messages, migrate

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # holds `app`: a source checkout, or site-packages
BENCH_ANSWER = "Sure — happy to help with that!"  # what the instant engine says in every benchmark
CONCURRENT_CONVERSATIONS = 100
WARM_UP_TURNS = 20


# Figures and tables


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ms(seconds: float, digits: int = 2) -> str:
    return f"{seconds * 1000:.{digits}f}"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def met(target_reached: bool) -> str:
    return "met" if target_reached else "MISSED"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def machine_description() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )


# Databases


async def migrated_sqlite_database(directory: Path, name: str) -> str:
    """The URL of a new SQLite file `name` in `directory`, migrated to head."""
    url = f"sqlite+aiosqlite:///{directory / name}"
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    return url


@asynccontextmanager
async def throwaway_database(url: str) -> AsyncIterator[str]:
    """A fresh, migrated database beside the URL's (on the same PostgreSQL server), dropped afterwards; the
    URL's user needs CREATEDB."""
    name = f"kortana_bench_{os.getpid()}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        bench_url = make_url(url).set(database=name).render_as_string(hide_password=False)
        engine = create_engine(bench_url)
        await migrate(engine)
        await engine.dispose()
        yield bench_url
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def seed_history(url: str, user_id: int, size: int) -> None:
    """Give the conversation (`user_id`, "bench") `size` stored messages, written directly: seeding is not what
    is measured."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            conversation_id = await connection.scalar(
                insert(conversations).values(user_id=user_id, scope="bench").returning(conversations.c.id)
            )
            rows = [
                {
                    "conversation_id": conversation_id,
                    "role": "user" if i % 2 == 0 else "assistant",
                    "content": f"stored message number {i} of the past",
                    "token_count": 9,
                }
                for i in range(size)
            ]
            await connection.execute(insert(messages), rows)
    finally:
        await engine.dispose()


# Turns through the real service, with an instant engine in place of the model


def bench_engine(delay_s: float = 0.0) -> InstantEngine:
    return InstantEngine(answer=BENCH_ANSWER, delay_s=delay_s, keep_requests=False)


def open_bench_service(url: str, engines: Sequence[Engine] = ()) -> ConversationService:
    """The service of a turn as the bot runs it, on `url`, with `engines` (an instant one by default) before echo."""
    chain = EngineChain([Tier(engine, 5.0) for engine in engines or [bench_engine()]], EchoEngine(), max_tokens=400)
    return ConversationService(
        open_store(create_engine(url), 3000),
        chain,
        EstimatedTokens(),
        system_prompt=DEFAULT_SYSTEM_PROMPT,
        history_token_budget=3000,
    )


async def one_turn(service: ConversationService, key: ConversationKey, text: str) -> None:
    async with aclosing(service.respond(key, "bench", text)) as events:
        async for _ in events:
            pass


async def turn_latencies(service: ConversationService, key: ConversationKey, turns: int) -> list[float]:
    """Seconds of each of `turns` turns of one conversation, one at a time, after a warm-up."""
    for _ in range(WARM_UP_TURNS):  # warm caches and connections
        await one_turn(service, key, "warming up")
    samples = []
    for i in range(turns):
        started = time.perf_counter()
        await one_turn(service, key, f"tell me something new, number {i}")
        samples.append(time.perf_counter() - started)
    return samples


async def throughput(
    url: str,
    first_user: int,
    turns_per_conversation: int,
    ready: Callable[[], Awaitable[None]] | None = None,
    conversations: int = CONCURRENT_CONVERSATIONS,
    model_delay_s: float = 0.0,
) -> tuple[int, float, float]:
    """(turns, seconds, CPU seconds of this process) of `conversations` conversations talking at once, with a
    stand-in model that answers after `model_delay_s`.

    The clocks start after `ready` (the conversations exist and the pool is filled by then).
    """
    service = open_bench_service(url, [bench_engine(model_delay_s)])
    keys = [ConversationKey(first_user + n, "bench") for n in range(conversations)]

    async def talk(key: ConversationKey) -> None:
        for i in range(turns_per_conversation):
            await one_turn(service, key, f"message {i}, with a few words to count")

    try:
        await asyncio.gather(*(one_turn(service, key, "hello") for key in keys))  # conversations exist, pool is full
        if ready is not None:
            await ready()
        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(talk(key) for key in keys))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        await service.close()
    return turns_per_conversation * len(keys), elapsed, cpu


# The process around a section


def allow_loopback_hub_calls() -> None:
    """huggingface_hub's offline mode blocks 127.0.0.1 too, where the local servers of some sections listen; the
    constant is read at import, so both go."""
    os.environ.pop("HF_HUB_OFFLINE", None)
    huggingface_hub.constants.HF_HUB_OFFLINE = False


@contextmanager
def logging_while_measuring(
    level: int = logging.WARNING, *, discard: bool = False, levels: Mapping[str, int] | None = None
) -> Iterator[None]:
    """The root logger at `level` and the named loggers at `levels` while a section runs; with `discard`, records
    are still formatted and written, into nothing (their cost stays in the figures, their noise leaves the
    terminal). The caller's configuration comes back afterwards."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, root.handlers[:]
    named = {logging.getLogger(name): named_level for name, named_level in (levels or {}).items()}
    saved_named = {logger: logger.level for logger in named}
    with ExitStack() as stack:
        root.setLevel(level)
        if discard:
            root.handlers = [logging.StreamHandler(stack.enter_context(open(os.devnull, "w")))]
        for logger, named_level in named.items():
            logger.setLevel(named_level)
        try:
            yield
        finally:
            root.setLevel(saved_level)
            root.handlers = saved_handlers
            for logger, saved in saved_named.items():
                logger.setLevel(saved)


class SourceCheckoutNeeded(Exception):
    """A section drives the fakes of the test suite, and this installation has none."""


def import_test_kit(section: str, *modules: str) -> None:
    """Import `modules` of the test suite (its fakes of outside services) for `section`.

    The test suite is not part of the package: it is there when the package runs from a source checkout, which
    `kortana` (started from anywhere) does not have on its path by itself.
    """
    if (PACKAGE_ROOT / "tests" / "fakes").is_dir() and str(PACKAGE_ROOT) not in sys.path:
        sys.path.append(str(PACKAGE_ROOT))
    try:
        for module in modules:
            importlib.import_module(module)
    except ModuleNotFoundError as missing:
        raise SourceCheckoutNeeded(
            f"{section} section skipped: it drives the test suite's fakes, and {missing.name!r} is not importable "
            "here; run it from a source checkout with the 'test' extra installed"
        ) from missing
