"""`kortana bench metrics`: what the operator's metrics and turn-tagged logs add to a turn.

The engine is instant, the database a SQLite file. A plain turn is `respond` alone, as with no metrics kept; a
measured turn is what the bot adds around it for issue 14: the turn's log context (`turn_logging`), its count
and active gauge (`Metrics.turn`), the chain's observer (first-chunk and answer histograms), and the REST calls
a Discord answer makes (a reply and its final edit) counted by route template, and the one INFO line the bot logs
per turn, written as a JSON line (to the null device) by the handler `LOG_FORMAT=json` installs. The two kinds
alternate turn by turn on the same service and database, so drift hits both alike.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.bench.shared import (
    migrated_sqlite_database,
    ms,
    one_turn,
    open_bench_service,
    percentile,
    print_table,
    seed_history,
)
from app.bot.discord_trace import route_template
from app.conversation.log_context import log_handler, turn_logging
from app.conversation.metrics import Metrics
from app.conversation.service import ConversationService
from app.engines import NO_OBSERVER
from app.storage import ConversationKey

log = logging.getLogger(__name__)
HISTORY = 100
ROUNDS = 10
WARM_UP_TURNS = 20
# What one streamed Discord answer costs in REST calls, at the least: the reply, then its final edit.
REST_CALLS = (("POST", "/api/v10/channels/1234567890123/messages"),
              ("PATCH", "/api/v10/channels/1234567890123/messages/9876543210987"))  # fmt: skip


async def run_metrics_section(directory: Path, quick: bool) -> None:
    turns_per_round = 20 if quick else 200
    with json_logs_at_info():
        plain, measured = await _compare(await migrated_sqlite_database(directory, "metrics.db"), turns_per_round)
    plain_p50, measured_p50 = percentile(plain, 0.5), percentile(measured, 0.5)
    print_table(
        f"Per-turn overhead with metrics and turn-tagged logs on, instant engine, SQLite file, {HISTORY}-message "
        f"history ({ROUNDS} rounds of {turns_per_round} turns of each kind, alternating)",
        ["metrics", "p50 ms", "p99 ms", "p50 change"],
        [
            ["off", ms(plain_p50), ms(percentile(plain, 0.99)), ""],
            ["on", ms(measured_p50), ms(percentile(measured, 0.99)), f"{(measured_p50 / plain_p50 - 1) * 100:+.1f} %"],
        ],
    )


async def _compare(url: str, turns_per_round: int) -> tuple[list[float], list[float]]:
    await seed_history(url, 1, HISTORY)
    await seed_history(url, 2, HISTORY)
    service = open_bench_service(url)
    metrics = Metrics()
    plain_key, measured_key = ConversationKey(1, "bench"), ConversationKey(2, "bench")
    try:
        for _ in range(WARM_UP_TURNS):
            await _plain_turn(service, metrics, plain_key, "warming up")
            await _measured_turn(service, metrics, measured_key, "warming up")
        plain: list[float] = []
        measured: list[float] = []
        kinds = [(plain, _plain_turn, plain_key), (measured, _measured_turn, measured_key)]
        for round_number in range(ROUNDS):
            for i in range(turns_per_round):
                # Turn by turn, each kind first every other time: drift (a WAL checkpoint, a collection, the
                # other programs on the machine) hits both alike.
                for samples, turn, key in kinds if i % 2 == 0 else kinds[::-1]:
                    started = time.perf_counter()
                    await turn(service, metrics, key, f"tell me something new, number {round_number}.{i}")
                    samples.append(time.perf_counter() - started)
    finally:
        await service.close()
    return plain, measured


@contextmanager
def json_logs_at_info() -> Iterator[None]:
    """The root logger as a deployed bot has it with LOG_FORMAT=json: INFO and up, one JSON line each, stamped
    with the turn, its only handler; written to the null device, so the cost measured is the logging's, not a
    terminal's (the bench's own handlers are put back after)."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    with open(os.devnull, "w", encoding="utf-8") as null:
        root.handlers = [log_handler("json", null)]
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.handlers = handlers
            root.setLevel(level)


async def _plain_turn(service: ConversationService, _metrics: Metrics, key: ConversationKey, text: str) -> None:
    service.watch_engines(NO_OBSERVER)
    await one_turn(service, key, text)


async def _measured_turn(service: ConversationService, metrics: Metrics, key: ConversationKey, text: str) -> None:
    service.watch_engines(metrics)
    with turn_logging(0), metrics.turn("discord"):
        await one_turn(service, key, text)
        for method, path in REST_CALLS:
            metrics.discord_call(method, route_template(path), 200)
        log.debug("Turn %s in conversation %s", "answered", key.log_id)  # the bot's one line per turn (DEBUG)
