"""`kortana bench storage`: per-turn overhead and throughput of the conversation path on a SQLite file.

The engine is instant, so what is measured is everything but the model: locks, token counting, the window
query and the two committed writes. The same statements in plain `sqlite3` are the floor.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from app.bench.shared import (
    BENCH_ANSWER,
    CONCURRENT_CONVERSATIONS,
    migrated_sqlite_database,
    ms,
    open_bench_service,
    percentile,
    print_table,
    seed_history,
    throughput,
    turn_latencies,
)
from app.storage import ConversationKey

HISTORY_SIZES = (100, 10_000, 100_000)


async def run_storage_section(directory: Path, quick: bool) -> None:
    turns = 200 if quick else 2000
    overhead = await bench_turn_overhead(directory, turns)
    floor = await bench_sqlite_floor(directory, turns)
    print_table(
        f"Per-turn overhead, instant engine, SQLite file ({turns} turns each)",
        ["stored messages", "Kor'tana p50 ms", "Kor'tana p99 ms", "plain sqlite3 p50 ms", "plain sqlite3 p99 ms"],
        [
            [f"{size:,}", ms(ours[0]), ms(ours[1]), ms(theirs[0], 3), ms(theirs[1], 3)]
            for size, ours, theirs in zip(HISTORY_SIZES, overhead, floor, strict=True)
        ],
    )
    ratio = overhead[-1][0] / overhead[0][0]
    print(f"\n{HISTORY_SIZES[-1]:,}-message history vs {HISTORY_SIZES[0]:,}-message history, p50: {ratio:.2f}×")
    url = await migrated_sqlite_database(directory, "throughput.db")
    total, seconds, _ = await throughput(url, 10_000, 5 if quick else 30)
    print_table(
        "Throughput",
        ["concurrent conversations", "turns", "turns/s"],
        [[CONCURRENT_CONVERSATIONS, total, f"{total / seconds:,.0f}"]],
    )


async def bench_turn_overhead(directory: Path, turns: int) -> list[tuple[float, float]]:
    """(p50, p99) seconds of a turn per history size."""
    url = await migrated_sqlite_database(directory, "overhead.db")
    for user_id, size in enumerate(HISTORY_SIZES):
        await seed_history(url, user_id, size)
    service = open_bench_service(url)
    try:
        results = []
        for user_id, _ in enumerate(HISTORY_SIZES):
            samples = await turn_latencies(service, ConversationKey(user_id, "bench"), turns)
            results.append((percentile(samples, 0.5), percentile(samples, 0.99)))
        return results
    finally:
        await service.close()


async def bench_sqlite_floor(directory: Path, turns: int) -> list[tuple[float, float]]:
    """(p50, p99) seconds of the same statements in plain sqlite3, one commit per write, per history size."""
    url = await migrated_sqlite_database(directory, "floor.db")  # migrated, so WAL mode is already on
    for user_id, size in enumerate(HISTORY_SIZES):
        await seed_history(url, user_id, size)
    return await asyncio.to_thread(_time_sqlite_turns, directory / "floor.db", turns)


def _time_sqlite_turns(database: Path, turns: int) -> list[tuple[float, float]]:
    connection = sqlite3.connect(database)
    connection.execute("PRAGMA synchronous=NORMAL")
    try:
        results = []
        for user_id, _ in enumerate(HISTORY_SIZES):
            conversation_id = connection.execute(
                "SELECT id FROM conversations WHERE user_id = ? AND scope = 'bench'", (user_id,)
            ).fetchone()[0]
            samples = []
            for i in range(turns):
                started = time.perf_counter()
                _sqlite_turn(connection, conversation_id, f"tell me something new, number {i}")
                samples.append(time.perf_counter() - started)
            results.append((percentile(samples, 0.5), percentile(samples, 0.99)))
        return results
    finally:
        connection.close()


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
        "VALUES (?, ?, 'assistant', ?, 8, 'instant') RETURNING id",
        (conversation_id, user_id, BENCH_ANSWER),
    ).fetchone()
    connection.commit()
