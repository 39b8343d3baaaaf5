"""The operator's figures of one bot (or terminal): turns, engine latency and failovers, breakers, the local
model's queue, the database, memory jobs, Discord's REST calls, and the process, in a Prometheus registry of
its own (tests start many bots in one process: the global registry would mix them).

Events are counted as they happen (`turn`, the chain's `ChainObserver` calls, `discord_call`) in plain numbers,
and become Prometheus families only when scraped (`EventCounts.collect`): a turn pays a few dictionary updates,
not prometheus_client's lock per update. What the service already knows is read from its `ServiceStatus` when
scraped (`read_status`). Labels are bounded: front ends, outcomes, engine names, error kinds, breaker states,
HTTP methods and route templates. Never a user id, a message's text or a secret.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

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


@dataclass(slots=True)
class Latencies:
    """One engine's histogram: observations per bucket (the last one past every bound) and their sum."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1  # the first bound >= seconds: Prometheus's `le`
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        buckets, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets


class EventCounts:
    """The figures of events, as plain numbers; a prometheus_client collector of them."""

    def __init__(self) -> None:
        self.active = 0
        self.turns: Tally[tuple[str, str]] = Tally()  # (front end, outcome)
        self.failovers: Tally[tuple[str, str]] = Tally()  # (engine, error kind)
        self.requests: Tally[tuple[str, str]] = Tally()  # (method, route)
        self.rate_limited: Tally[tuple[str, str]] = Tally()
        self.first_chunk: dict[str, Latencies] = {}
        self.answer: dict[str, Latencies] = {}

    def collect(self) -> Iterator[Metric]:
        yield _gauge("kortana_turns_active", "Turns running or waiting for their place now", self.active)
        yield _counter("kortana_turns", "Turns by front end and outcome", ["front_end", "outcome"], self.turns)
        yield _histogram(
            "kortana_engine_first_chunk_seconds", "From an engine call to its first text", self.first_chunk
        )
        yield _histogram("kortana_engine_answer_seconds", "From an engine call to its complete answer", self.answer)
        yield _counter(
            "kortana_engine_failovers", "Engine calls that failed, so the next engine was asked, by error kind",
            ["engine", "reason"], self.failovers,
        )  # fmt: skip
        yield _counter(
            "kortana_discord_requests", "Discord REST calls by method and route template", ["method", "route"],
            self.requests,
        )  # fmt: skip
        yield _counter(
            "kortana_discord_rate_limited", "Discord REST calls answered 429", ["method", "route"], self.rate_limited
        )


class Metrics:
    """One bot's figures. It is the chain's `ChainObserver` (see `ConversationService.watch_engines`)."""

    def __init__(self, *, process: bool = True) -> None:
        """`process`: also the process's memory, CPU and open files (Linux's /proc; once per process is enough)."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = EventCounts()
        self.registry.register(self.events)
        r = self.registry
        self.breaker = Gauge(
            "kortana_engine_breaker_state", "1 for the state each engine's circuit breaker is in", ["engine", "state"],
            registry=r,
        )  # fmt: skip
        self.engine_calls = Counter("kortana_engine_calls", "Calls to each engine", ["engine"], registry=r)
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
        self.recall_searches = Counter("kortana_recall_searches", "Searches of older turns", registry=r)
        if process:
            ProcessCollector(registry=r)
        self._recall_searches_seen = 0  # the service's count at the last scrape
        self._engine_calls_seen: dict[str, int] = {}  # each engine's count at the last scrape

    # --- events ------------------------------------------------------------------------------------------

    def turn(self, front_end: str) -> CountedTurn:
        """Count one turn from its start to its end (`with metrics.turn("discord") as record:`): active meanwhile,
        then by its outcome (cancelled: `cut`; an exception: `failed`)."""
        return CountedTurn(self.events, front_end)

    def first_chunk(self, engine: str, seconds: float) -> None:
        latencies = self.events.first_chunk.get(engine)
        if latencies is None:
            latencies = self.events.first_chunk[engine] = Latencies(FIRST_CHUNK_BUCKETS)
        latencies.observe(seconds)

    def answered(self, engine: str, seconds: float) -> None:
        latencies = self.events.answer.get(engine)
        if latencies is None:
            latencies = self.events.answer[engine] = Latencies(ANSWER_BUCKETS)
        latencies.observe(seconds)

    def failed(self, engine: str, kind: ErrorKind) -> None:
        self.events.failovers[engine, kind.value] += 1

    def discord_call(self, method: str, route: str, status: int) -> None:
        self.events.requests[method, route] += 1
        if status == 429:
            self.events.rate_limited[method, route] += 1

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
        self.recall_searches.inc(max(0, status.recall_searches - self._recall_searches_seen))
        self._recall_searches_seen = max(self._recall_searches_seen, status.recall_searches)
        queued = 0
        for engine in status.engines:
            if not engine.configured:
                continue
            seen = self._engine_calls_seen.get(engine.name, 0)
            self.engine_calls.labels(engine.name).inc(max(0, engine.calls - seen))
            self._engine_calls_seen[engine.name] = max(seen, engine.calls)
            for state in BREAKER_STATES:
                self.breaker.labels(engine.name, state).set(engine.breaker == state)
            queued += _count(engine.details.get("queued"))
        self.local_queue.set(queued)

    def exposition(self) -> bytes:
        """The registry in Prometheus's text format."""
        return generate_latest(self.registry)

    # --- what /ping shows ------------------------------------------------------------------------------------

    def summary(self) -> str:
        """One line of the figures since start: turns by outcome, failovers by engine and kind, Discord's 429s."""
        events = self.events
        by_outcome = Tally[str]()
        for (_, outcome), count in events.turns.items():
            by_outcome[outcome] += count
        turns = ", ".join(f"{by_outcome[outcome]} {outcome}" for outcome in OUTCOMES if by_outcome[outcome]) or "none"
        failovers = sum(events.failovers.values())
        kinds = ", ".join(f"{engine} {kind} {count}" for (engine, kind), count in sorted(events.failovers.items()))
        line = f"Turns since start: {turns} · Failovers: {failovers}" + (f" ({kinds})" if kinds else "")
        limited = sum(events.rate_limited.values())
        return line + (f" · Discord rate limits: {limited}" if limited else "")


class CountedTurn:
    """`Metrics.turn`'s context manager (a class: a generator-based one costs a turn several µs more)."""

    __slots__ = ("_events", "_front_end", "_record")

    def __init__(self, events: EventCounts, front_end: str) -> None:
        self._events = events
        self._front_end = front_end
        self._record = TurnRecord()

    def __enter__(self) -> TurnRecord:
        self._events.active += 1
        return self._record

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _traceback: TracebackType | None
    ) -> None:
        if kind is not None:
            self._record.outcome = "failed" if issubclass(kind, Exception) else "cut"
        self._events.active -= 1
        self._events.turns[self._front_end, self._record.outcome] += 1


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, labels: list[str], tally: Tally[tuple[str, str]]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in sorted(tally.items()):
        family.add_metric(list(key), count)
    return family


def _histogram(name: str, documentation: str, by_engine: dict[str, Latencies]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["engine"])
    for engine, latencies in sorted(by_engine.items()):
        family.add_metric([engine], latencies.cumulative(), latencies.total)
    return family


def _count(value: object) -> int:
    """An engine's own figure as a count; anything else (a plugin's text, None) counts nothing."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
