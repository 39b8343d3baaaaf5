"""`kortana bench postgres` (with a PostgreSQL DATABASE_URL): PostgreSQL beside SQLite in the same run, and two
OS processes on one PostgreSQL (issue 6).

Everything runs in a throwaway database created on that server and dropped at the end (the URL's user needs
CREATEDB); the SQLite side is a file in a temporary directory. The method is the storage section's: an instant
engine, so a turn is everything but the model. Targets: PostgreSQL per-turn p50 <= 2 ms on loopback; two
processes >= 1.6x the throughput of one.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from sqlalchemy import text

from app.bench.shared import (
    CONCURRENT_CONVERSATIONS,
    PACKAGE_ROOT,
    met,
    migrated_sqlite_database,
    ms,
    open_bench_service,
    percentile,
    print_table,
    seed_history,
    throughput,
    throwaway_database,
    turn_latencies,
)
from app.storage import ConversationKey, create_engine

HISTORY_SIZES = (100, 10_000)
P50_TARGET_S = 0.002
TWO_PROCESS_TARGET = 1.6
LATENCY_BOUND_CONVERSATIONS = 20  # at 50 ms a turn, about 400 turns/s a process: CPU to spare on 2 cores
PROCESSES_TABLE_HEADER = ["processes", "turns", "turns/s", "vs one process", "cores busy in the bot processes"]


async def run_postgres_section(url: str, directory: Path, quick: bool) -> None:
    turns = 200 if quick else 2000
    per_conversation = 5 if quick else 30
    print(f"\nServer: {await server_description(url)}")
    async with throwaway_database(url) as postgres:
        sqlite = await migrated_sqlite_database(directory, "beside-postgres.db")
        databases = {"SQLite": sqlite, "PostgreSQL": postgres}
        overhead = {name: await turn_overhead(database, turns) for name, database in databases.items()}
        print_table(
            f"Per-turn overhead, instant engine ({turns} turns each, one at a time)",
            ["stored messages", "SQLite p50 ms", "SQLite p99 ms", "PostgreSQL p50 ms", "PostgreSQL p99 ms"],
            [
                [f"{size:,}", *(ms(value) for name in overhead for value in overhead[name][row])]
                for row, size in enumerate(HISTORY_SIZES)
            ],
        )
        p50 = max(p50 for p50, _ in overhead["PostgreSQL"])
        print(f"\nTarget PostgreSQL p50 <= {P50_TARGET_S * 1000:g} ms: {met(p50 <= P50_TARGET_S)} ({ms(p50)} ms)")

        rows = []
        for name, database in databases.items():
            total, seconds, _ = await throughput(database, 10_000, per_conversation)
            rows.append([name, CONCURRENT_CONVERSATIONS, total, f"{total / seconds:,.0f}"])
        print_table("Throughput, one process", ["database", "concurrent conversations", "turns", "turns/s"], rows)

        runs = [await processes_throughput(postgres, n, per_conversation, 10_000 + 1_000 * n) for n in (1, 2)]
        print_table(
            f"PostgreSQL throughput by process ({CONCURRENT_CONVERSATIONS} concurrent conversations per process)",
            PROCESSES_TABLE_HEADER,
            processes_rows(runs),
        )
        ratio = runs[1][1] / runs[0][1]
        cores = f"CPU-bound: {os.cpu_count()} cores shared with the server"
        print(
            f"\nTarget two processes >= {TWO_PROCESS_TARGET:g}× one: {met(ratio >= TWO_PROCESS_TARGET)} "
            f"({ratio:.2f}×, {cores})"
        )

        # The same with a stand-in model that takes 50 ms, as real models take (seconds, usually): the CPU is
        # no longer the limit, so this shows whether the processes serialise each other in the database.
        bound = [
            await processes_throughput(
                postgres, n, per_conversation, 50_000 + 1_000 * n, LATENCY_BOUND_CONVERSATIONS, model_delay_ms=50
            )
            for n in (1, 2)
        ]
        print_table(
            f"PostgreSQL throughput by process, model answering in 50 ms ({LATENCY_BOUND_CONVERSATIONS} conversations "
            "per process)",
            PROCESSES_TABLE_HEADER,
            processes_rows(bound),
        )
        ratio = bound[1][1] / bound[0][1]
        print(
            f"\nTwo processes >= {TWO_PROCESS_TARGET:g}× one when the model, not the CPU, sets the pace: "
            f"{met(ratio >= TWO_PROCESS_TARGET)} ({ratio:.2f}×)"
        )


async def server_description(url: str) -> str:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            version = await connection.scalar(text("SHOW server_version"))
            fsync = await connection.scalar(text("SHOW fsync"))
            synchronous = await connection.scalar(text("SHOW synchronous_commit"))
    finally:
        await engine.dispose()
    return f"PostgreSQL {version} (fsync={fsync}, synchronous_commit={synchronous}), asyncpg, loopback TCP"


async def turn_overhead(url: str, turns: int) -> list[tuple[float, float]]:
    """(p50, p99) seconds per history size: warm-up turns, then `turns` timed turns, one at a time."""
    for user_id, size in enumerate(HISTORY_SIZES):
        await seed_history(url, user_id, size)
    service = open_bench_service(url)
    results = []
    try:
        for user_id, _ in enumerate(HISTORY_SIZES):
            samples = await turn_latencies(service, ConversationKey(user_id, "bench"), turns)
            results.append((percentile(samples, 0.5), percentile(samples, 0.99)))
    finally:
        await service.close()
    return results


async def processes_throughput(
    url: str,
    processes: int,
    turns_per_conversation: int,
    first_user: int,
    conversations: int = CONCURRENT_CONVERSATIONS,
    model_delay_ms: int = 0,
) -> tuple[int, float, float]:
    """(turns, turns/s, cores the client processes kept busy) of `processes` OS processes started together,
    each with its own pool and its own conversations."""
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.bench.postgres_worker", url,
            str(first_user + n * conversations), str(turns_per_conversation), str(conversations), str(model_delay_ms),
            cwd=PACKAGE_ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        for n in range(processes)
    ]
    for worker in workers:
        assert worker.stdout is not None
        if (await worker.stdout.readline()).strip() != b"ready":
            raise RuntimeError("a benchmark worker did not start")
    reports = await asyncio.gather(*(worker.communicate(b"go\n") for worker in workers))
    results = [json.loads(stdout) for stdout, _ in reports]
    turns, seconds = sum(r[0] for r in results), max(r[1] for r in results)
    return turns, turns / seconds, sum(r[2] for r in results) / seconds


def processes_rows(runs: list[tuple[int, float, float]]) -> list[list[object]]:
    """Table rows of runs with 1, 2, ... processes, each against the first."""
    return [
        [n, total, f"{rate:,.0f}", f"{rate / runs[0][1]:.2f}×", f"{busy:.2f}"]
        for n, (total, rate, busy) in enumerate(runs, start=1)
    ]
