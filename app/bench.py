"""`kortana bench`: per-turn overhead and throughput of the conversation path, printed as tables.

The engine is instant, so what is measured is everything but the model: locks, token counting, the window
query and the two committed writes. The same statements in plain `sqlite3` are the floor.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from pathlib import Path

from app.config import DEFAULT_SYSTEM_PROMPT, Settings
from app.conversation.service import ConversationService
from app.conversation.tokens import EstimatedTokens
from app.engines import ChatMessage
from app.engines.chain import EngineChain, Tier
from app.engines.echo import EchoEngine
from app.storage import ConversationKey, create_engine, migrate, open_history_store

HISTORY_SIZES = (100, 10_000, 100_000)
CONCURRENT_CONVERSATIONS = 100


class InstantEngine:
    """Answers at once (or after `delay_s`, a stand-in for a model's time): the benchmark measures everything
    around the model."""

    name = "instant"
    context_window = 8192

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        yield "Sure — happy to help with that!"

    async def aclose(self) -> None:
        pass


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def machine_description() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"


async def open_bench_service(url: str, engines: list | None = None) -> ConversationService:
    chain = EngineChain([Tier(engine, 5.0) for engine in engines or [InstantEngine()]], EchoEngine(), max_tokens=400)
    return ConversationService(
        open_history_store(create_engine(url), window_budget=3000),
        chain,
        EstimatedTokens(),
        system_prompt=DEFAULT_SYSTEM_PROMPT,
        history_token_budget=3000,
    )


async def one_turn(service: ConversationService, key: ConversationKey, text: str) -> None:
    async with aclosing(service.respond(key, "bench", text)) as events:
        async for _ in events:
            pass


async def turn_latencies_ms(service: ConversationService, key: ConversationKey, turns: int) -> list[float]:
    """Milliseconds of each of `turns` turns of one conversation, one at a time, after a warm-up."""
    for _ in range(20):  # warm caches and connections
        await one_turn(service, key, "warming up")
    samples = []
    for i in range(turns):
        started = time.perf_counter()
        await one_turn(service, key, f"tell me something new, number {i}")
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def seed_history(database: Path, user_id: int, size: int) -> None:
    """Give one conversation `size` stored messages, written directly (seeding is not what is measured)."""
    with sqlite3.connect(database) as connection:
        cursor = connection.execute(
            "INSERT INTO conversations (user_id, scope) VALUES (?, 'bench') RETURNING id", (user_id,)
        )
        conversation_id = cursor.fetchone()[0]
        rows = (
            (conversation_id, "user" if i % 2 == 0 else "assistant", f"stored message number {i} of the past", 9, None)
            for i in range(size)
        )
        connection.executemany(
            "INSERT INTO messages (conversation_id, role, content, token_count, engine) VALUES (?, ?, ?, ?, ?)", rows
        )


async def migrated_database(directory: Path, name: str) -> str:
    url = f"sqlite+aiosqlite:///{directory / name}"
    engine = create_engine(url)
    await migrate(engine)
    await engine.dispose()
    return url


async def bench_turn_overhead(directory: Path, turns: int) -> list[list[object]]:
    url = await migrated_database(directory, "overhead.db")
    for user_id, size in enumerate(HISTORY_SIZES):
        seed_history(directory / "overhead.db", user_id, size)
    service = await open_bench_service(url)
    rows = []
    try:
        for user_id, size in enumerate(HISTORY_SIZES):
            samples = await turn_latencies_ms(service, ConversationKey(user_id, "bench"), turns)
            rows.append([f"{size:,}", f"{percentile(samples, 0.5):.2f}", f"{percentile(samples, 0.99):.2f}"])
    finally:
        await service.close()
    return rows


async def bench_throughput(directory: Path, turns_per_conversation: int) -> tuple[float, int]:
    url = await migrated_database(directory, "throughput.db")
    service = await open_bench_service(url)
    keys = [ConversationKey(10_000 + n, "bench") for n in range(CONCURRENT_CONVERSATIONS)]

    async def talk(key: ConversationKey) -> None:
        for i in range(turns_per_conversation):
            await one_turn(service, key, f"message {i}, with a few words to count")

    try:
        await asyncio.gather(*(one_turn(service, key, "hello") for key in keys))  # create the conversations
        started = time.perf_counter()
        await asyncio.gather(*(talk(key) for key in keys))
        elapsed = time.perf_counter() - started
    finally:
        await service.close()
    total = turns_per_conversation * CONCURRENT_CONVERSATIONS
    return total / elapsed, total


def bench_sqlite_floor(directory: Path, turns: int) -> list[list[object]]:
    """The same statements of one turn in plain sqlite3, one commit per write, as the floor."""
    database = directory / "floor.db"  # migrated by the caller, so WAL mode is already on
    for user_id, size in enumerate(HISTORY_SIZES):
        seed_history(database, user_id, size)
    rows = []
    connection = sqlite3.connect(database)
    connection.execute("PRAGMA synchronous=NORMAL")
    try:
        for user_id, size in enumerate(HISTORY_SIZES):
            conversation_id = connection.execute(
                "SELECT id FROM conversations WHERE user_id = ? AND scope = 'bench'", (user_id,)
            ).fetchone()[0]
            samples = []
            for i in range(turns):
                started = time.perf_counter()
                _sqlite_turn(connection, conversation_id, f"tell me something new, number {i}")
                samples.append((time.perf_counter() - started) * 1000)
            rows.append([f"{size:,}", f"{percentile(samples, 0.5):.3f}", f"{percentile(samples, 0.99):.3f}"])
    finally:
        connection.close()
    return rows


def _sqlite_turn(connection: sqlite3.Connection, conversation_id: int, text: str) -> None:
    """What a Kor'tana turn sends SQLite: the newest-id check of the cached window, two committed inserts."""
    connection.execute("SELECT max(id) FROM messages WHERE conversation_id = ?", (conversation_id,)).fetchone()
    user_id = connection.execute(
        "INSERT INTO messages (conversation_id, role, content, token_count) VALUES (?, 'user', ?, 9) RETURNING id",
        (conversation_id, text),
    ).fetchone()[0]
    connection.commit()
    connection.execute(
        "INSERT INTO messages (conversation_id, turn_id, role, content, token_count, engine) "
        "VALUES (?, ?, 'assistant', 'Sure — happy to help with that!', 8, 'instant') RETURNING id",
        (conversation_id, user_id),
    ).fetchone()
    connection.commit()


async def run_benchmarks(settings: Settings, sections: Sequence[str] = (), quick: bool = False) -> None:
    """storage (always), local (when the local extra is installed), postgres (when DATABASE_URL is one)."""
    wanted = set(sections) or {"storage", "local", "postgres"}
    print(f"Machine: {machine_description()}")
    with tempfile.TemporaryDirectory(prefix="kortana-bench-") as temporary:
        directory = Path(temporary)
        if "storage" in wanted:
            await run_storage_section(directory, 200 if quick else 2000, quick)
        if "local" in wanted:
            await run_local_section(quick)
        if "postgres" in wanted:
            if settings.database_url.startswith("postgresql"):
                from app.bench_postgres import run_postgres_section

                await run_postgres_section(settings.database_url, directory, quick)
            else:
                print("\n(PostgreSQL section skipped: set DATABASE_URL=postgresql+asyncpg://... to run it)")


async def run_local_section(quick: bool) -> None:
    from app.engines.local import local_extra_installed

    if not local_extra_installed():
        print("\n(local model section skipped: install the 'local' extra)")
        return
    from app.bench_local import bench_local, format_table

    print("\n### Local brain: our engine (worker process) vs llama-cpp-python called directly\n")
    print("```")
    print(format_table(await bench_local(runs=3 if quick else 9)))
    print("```")


async def run_storage_section(directory: Path, turns: int, quick: bool) -> None:
    overhead = await bench_turn_overhead(directory, turns)
    await migrated_database(directory, "floor.db")
    floor = await asyncio.to_thread(bench_sqlite_floor, directory, turns)
    print_table(
        f"Per-turn overhead, instant engine, SQLite file ({turns} turns each)",
        ["stored messages", "Kor'tana p50 ms", "Kor'tana p99 ms", "plain sqlite3 p50 ms", "plain sqlite3 p99 ms"],
        [ours + theirs[1:] for ours, theirs in zip(overhead, floor)],
    )
    ratio = float(overhead[-1][1]) / float(overhead[0][1])
    print(f"\n100,000-message history vs 100-message history, p50: {ratio:.2f}×")
    per_conversation = 5 if quick else 30
    rate, total = await bench_throughput(directory, per_conversation)
    print_table(
        "Throughput",
        ["concurrent conversations", "turns", "turns/s"],
        [[CONCURRENT_CONVERSATIONS, total, f"{rate:,.0f}"]],
    )
