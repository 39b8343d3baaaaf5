"""The operator's figures of one bot (or terminal): turns, engine latency and failovers, breakers, the local
model's queue, the database, memory jobs, Discord's REST calls, and the process, in a Prometheus registry of
its own (tests start many bots in one process: the global registry would mix them).

Events are counted as they happen (`turn`, the chain's `ChainObserver` calls, `discord_call`); what the service
already knows is read from its `ServiceStatus` when scraped (`read_status`). Labels are bounded: front ends,
outcomes, engine names, error kinds, breaker states, HTTP methods and route templates. Never a user id, a
message's text or a secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

from app.conversation.service import ServiceStatus
from app.engines import ErrorKind

Outcome = Literal["answered", "refused", "cut", "failed"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
BREAKER_STATES = ("closed", "half_open", "open")
FIRST_CHUNK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0)
ANSWER_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(slots=True)
class TurnRecord:
    """What a front end says of a turn while it runs; `answered` unless it says otherwise."""

    outcome: Outcome = "answered"


class Metrics:
    """One bot's figures. It is the chain's `ChainObserver` (see `ConversationService.watch_engines`)."""

    def __init__(self, *, process: bool = True) -> None:
        """`process`: also the process's memory, CPU and open files (Linux's /proc; once per process is enough)."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.turns = Counter("kortana_turns", "Turns by front end and outcome", ["front_end", "outcome"], registry=r)
        self.active_turns = Gauge("kortana_turns_active", "Turns running or waiting for their place now", registry=r)
        self.first_chunks = Histogram(
            "kortana_engine_first_chunk_seconds", "From an engine call to its first text", ["engine"],
            buckets=FIRST_CHUNK_BUCKETS, registry=r,
        )  # fmt: skip
        self.answers = Histogram(
            "kortana_engine_answer_seconds", "From an engine call to its complete answer", ["engine"],
            buckets=ANSWER_BUCKETS, registry=r,
        )  # fmt: skip
        self.failovers = Counter(
            "kortana_engine_failovers", "Engine calls that failed, so the next engine was asked, by error kind",
            ["engine", "reason"], registry=r,
        )  # fmt: skip
        self.breaker = Gauge(
            "kortana_engine_breaker_state", "1 for the state each engine's circuit breaker is in", ["engine", "state"],
            registry=r,
        )  # fmt: skip
        self.engine_calls = Gauge("kortana_engine_calls", "Calls to each engine since start", ["engine"], registry=r)
        self.local_queue = Gauge("kortana_local_model_queue_depth", "Turns waiting for the local model", registry=r)
        self.database_up = Gauge("kortana_database_up", "1 when the database answered the last check", registry=r)
        self.database_writes_failing = Gauge(
            "kortana_database_writes_failing", "1 while writes to the database fail", registry=r
        )
        self.database_round_trip = Gauge(
            "kortana_database_round_trip_seconds", "The last check's round trip to the database", registry=r
        )
        self.database_check_failures = Counter(
            "kortana_database_check_failures", "Database checks that failed (unreachable or not writable)", registry=r
        )
        self.unsaved_answers = Gauge("kortana_unsaved_answers", "Answers shown, waiting to be stored", registry=r)
        self.summary_jobs = Gauge("kortana_summary_jobs_running", "Rolling summaries being written", registry=r)
        self.recall_searches = Gauge("kortana_recall_searches", "Searches of older turns since start", registry=r)
        self.discord_requests = Counter(
            "kortana_discord_requests", "Discord REST calls by method and route template", ["method", "route"],
            registry=r,
        )  # fmt: skip
        self.discord_rate_limited = Counter(
            "kortana_discord_rate_limited", "Discord REST calls answered 429", ["method", "route"], registry=r
        )
        if process:
            ProcessCollector(registry=r)
        # What /ping shows, kept as plain numbers: reading them back from the registry costs more.
        self._turn_counts = dict.fromkeys(OUTCOMES, 0)
        self._failover_counts: dict[tuple[str, str], int] = {}
        self._rate_limited = 0

    # --- events ------------------------------------------------------------------------------------------

    @contextmanager
    def turn(self, front_end: str) -> Iterator[TurnRecord]:
        """Count one turn from its start to its end: active meanwhile, then by its outcome (cancelled: `cut`,
        an exception: `failed`)."""
        record = TurnRecord()
        self.active_turns.inc()
        try:
            yield record
        except BaseException as error:
            record.outcome = "failed" if isinstance(error, Exception) else "cut"
            raise
        finally:
            self.active_turns.dec()
            self.turns.labels(front_end, record.outcome).inc()
            self._turn_counts[record.outcome] += 1

    def first_chunk(self, engine: str, seconds: float) -> None:
        self.first_chunks.labels(engine).observe(seconds)

    def answered(self, engine: str, seconds: float) -> None:
        self.answers.labels(engine).observe(seconds)

    def failed(self, engine: str, kind: ErrorKind) -> None:
        self.failovers.labels(engine, kind.value).inc()
        self._failover_counts[engine, kind.value] = self._failover_counts.get((engine, kind.value), 0) + 1

    def discord_call(self, method: str, route: str, status: int) -> None:
        self.discord_requests.labels(method, route).inc()
        if status == 429:
            self.discord_rate_limited.labels(method, route).inc()
            self._rate_limited += 1

    # --- read when scraped ---------------------------------------------------------------------------------

    def read_status(self, status: ServiceStatus | None) -> None:
        """What the service knows now (None: it did not answer within the check's bound)."""
        if status is None or not status.database_ok:
            self.database_check_failures.inc()
        if status is None:
            self.database_up.set(0)
            return
        self.database_up.set(status.database_round_trip_ms is not None)
        self.database_writes_failing.set(status.database_write_failure is not None)
        if status.database_round_trip_ms is not None:
            self.database_round_trip.set(status.database_round_trip_ms / 1000)
        self.unsaved_answers.set(status.unsaved_answers)
        self.summary_jobs.set(status.summary_jobs)
        self.recall_searches.set(status.recall_searches)
        queued = 0
        for engine in status.engines:
            if not engine.configured:
                continue
            self.engine_calls.labels(engine.name).set(engine.calls)
            for state in BREAKER_STATES:
                self.breaker.labels(engine.name, state).set(engine.breaker == state)
            queued += int(engine.details.get("queued") or 0)
        self.local_queue.set(queued)

    def exposition(self) -> bytes:
        """The registry in Prometheus's text format."""
        return generate_latest(self.registry)

    # --- what /ping shows ------------------------------------------------------------------------------------

    def summary(self) -> str:
        """One line of the figures since start: turns by outcome, failovers by engine and kind, Discord's 429s."""
        turns = ", ".join(f"{count} {outcome}" for outcome, count in self._turn_counts.items() if count) or "none"
        failovers = sum(self._failover_counts.values())
        kinds = ", ".join(f"{engine} {kind} {count}" for (engine, kind), count in sorted(self._failover_counts.items()))
        line = f"Turns since start: {turns} · Failovers: {failovers}" + (f" ({kinds})" if kinds else "")
        return line + (f" · Discord rate limits: {self._rate_limited}" if self._rate_limited else "")
