"""`kortana bench failover`: failover figures of the engine chain.

The brain and Hugging Face tiers are the real ChatApiEngine (huggingface_hub's client) against local
OpenAI-compatible servers; HF answers at once. "Added" is a case's time to the first chunk minus the
baseline's (the brain answering at once). The quick cases are measured in turns, one answer each per round, so
that drift of the machine hits them all alike. The outage case sends many users at once at a hanging brain
and measures every turn's time to its complete answer against the chain's stated bound (`answer_bound_s`).
The local servers are the test suite's fake (tests/fakes/), so this section runs from a source checkout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from pathlib import Path

from app.bench.shared import (
    allow_loopback_hub_calls,
    bench_engine,
    import_test_kit,
    logging_while_measuring,
    met,
    migrated_sqlite_database,
    ms,
    open_bench_service,
    percentile,
    print_table,
    turn_latencies,
    us,
)
from app.engines import BRAIN, HUGGINGFACE, ChatMessage, Engine, EngineError, EngineStarted, ErrorKind
from app.engines.chain import EngineChain, Tier
from app.engines.chat_api import ChatApiEngine
from app.engines.echo import EchoEngine
from app.storage import ConversationKey

BRAIN_DEADLINE_S = 1.0  # short on purpose: a hang costs exactly this, and the benchmark waits it out each time
OUTAGE_USERS = 50
OUTAGE_HF_DEADLINE_S = 2.0
FAILURE_THRESHOLD = 3
NEVER_OPENS = 10**9
MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are Kor'tana, a Sacred AI Companion."},
    {"role": "user", "content": "Hello there!"},
    {"role": "assistant", "content": "Hi! How can I help today?"},
    {"role": "user", "content": "Tell me something nice about the sea."},
]


def api_engine(name: str, base_url: str) -> ChatApiEngine:
    from tests.helpers import api_engine as test_kit_api_engine

    # The read timeout is far above the deadline: the chain's total deadline is what must end a hang.
    return test_kit_api_engine(base_url, name, timeout_s=20.0, context_window=8192)


def chain_of(brain: Engine, hf: Engine, failure_threshold: int = NEVER_OPENS) -> EngineChain:
    return EngineChain(
        [Tier(brain, BRAIN_DEADLINE_S), Tier(hf, 25.0)],
        EchoEngine(),
        max_tokens=400,
        failure_threshold=failure_threshold,
        open_for_s=3600.0,
    )


async def answer(chain: EngineChain) -> tuple[float, str]:
    """Seconds to the first text chunk of one answer, and the engine that gave it; the answer is read to its end."""
    started = time.perf_counter()
    first, engine = None, ""
    async with aclosing(chain.stream(lambda budget: MESSAGES, 3000)) as items:
        async for item in items:
            if isinstance(item, EngineStarted):
                engine = item.engine
            elif first is None:
                first = time.perf_counter() - started
    assert first is not None
    return first, engine


async def interleaved(chains: Sequence[EngineChain], rounds: int) -> list[list[tuple[float, str]]]:
    """`rounds` answers of each chain, one of each per round."""
    samples: list[list[tuple[float, str]]] = [[] for _ in chains]
    for _ in range(rounds):
        for chain, taken in zip(chains, samples, strict=True):
            taken.append(await answer(chain))
    return samples


async def bench_failover(rounds: int, hang_rounds: int) -> list[list[object]]:
    from tests.fakes.openai_server import FakeChatServer, Hang, Reply, refused_base_url

    async with FakeChatServer(default=Reply("Hello from the brain!")) as brain_server, \
            FakeChatServer(default=Reply("Hello from Hugging Face!")) as hf_server, \
            FakeChatServer(default=Hang()) as hanging_server:
        with refused_base_url() as refused_url:
            hf = api_engine(HUGGINGFACE, hf_server.base_url)
            hanging = api_engine(BRAIN, hanging_server.base_url)
            # (case, chain, target as text, limit on the added seconds)
            cases = [
                ("baseline: brain answers at once", chain_of(api_engine(BRAIN, brain_server.base_url), hf), "—",
                 None),
                ("brain refuses connections", chain_of(api_engine(BRAIN, refused_url), hf), "≤ 50 ms added", 0.050),
                ("brain hangs, breaker open", chain_of(hanging, hf, FAILURE_THRESHOLD), "≤ 1 ms added", 0.001),
                (f"brain hangs, breaker closed (deadline {BRAIN_DEADLINE_S:g} s)", chain_of(hanging, hf),
                 f"≈ the deadline: ≤ {BRAIN_DEADLINE_S * 1000 + 100:.0f} ms added", BRAIN_DEADLINE_S + 0.100),
            ]
            chains = [chain for _, chain, _, _ in cases]
            for chain in chains:
                for _ in range(FAILURE_THRESHOLD):  # warm up; this also opens the breaker of "breaker open"
                    await answer(chain)
            assert chains[2].status()[0].breaker == "open"
            # The hang is measured apart: it leaves the process idle for the deadline, and the first answer after
            # an idle second is about 1 ms slower here (a cold CPU), which would be charged to the next case.
            samples = await interleaved(chains[:3], rounds) + await interleaved(chains[3:], hang_rounds)

    baseline = [seconds for seconds, _ in samples[0]]
    rows = []
    for (name, _, target, limit), taken in zip(cases, samples, strict=True):
        seconds = [s for s, _ in taken]
        answered_by = ", ".join(sorted({engine for _, engine in taken}))
        added = [percentile(seconds, q) - percentile(baseline, q) for q in (0.5, 0.99)]
        rows.append([
            name, answered_by, len(seconds), ms(percentile(seconds, 0.5)), ms(percentile(seconds, 0.99)),
            *(("—", "—") if limit is None else (ms(a) for a in added)),
            target, "—" if limit is None else verdict(added, limit),
        ])
    return rows


async def timed_answer(chain: EngineChain) -> tuple[float, str]:
    """Seconds to the end of one answer, and the engine that gave it."""
    started = time.perf_counter()
    engine = ""
    async with aclosing(chain.stream(lambda budget: MESSAGES, 3000)) as items:
        async for item in items:
            if isinstance(item, EngineStarted):
                engine = item.engine
    return time.perf_counter() - started, engine


async def bench_outage(users: int, concurrency_limits: Sequence[int]) -> list[list[object]]:
    """`users` turns at once with a hanging brain, HF healthy: every turn's time to its answer."""
    from tests.fakes.openai_server import FakeChatServer, Hang, Reply
    from tests.helpers import BreakerWitness

    rows = []
    for limit in concurrency_limits:
        async with FakeChatServer(default=Hang()) as hanging_server, \
                FakeChatServer(default=Reply("Hello from Hugging Face!")) as hf_server:
            brain = BreakerWitness(api_engine(BRAIN, hanging_server.base_url))
            chain = EngineChain(
                [
                    Tier(brain, BRAIN_DEADLINE_S),
                    Tier(api_engine(HUGGINGFACE, hf_server.base_url), OUTAGE_HF_DEADLINE_S),
                ],
                EchoEngine(),
                max_tokens=400,
                failure_threshold=FAILURE_THRESHOLD,
                open_for_s=3600.0,
                max_concurrent_calls=limit,
            )
            brain.chain = chain
            await timed_answer(EngineChain([Tier(api_engine(HUGGINGFACE, hf_server.base_url), 5.0)], EchoEngine(),
                                           max_tokens=400))  # warm up the client outside the figures
            taken = await asyncio.gather(*(timed_answer(chain) for _ in range(users)))
            breaker_after = chain.status()[0].breaker
            await chain.aclose()
        seconds = [s for s, _ in taken]
        bound = chain.answer_bound_s
        engines = [engine for _, engine in taken]
        answered_by = ", ".join(f"{name} {engines.count(name)}" for name in sorted(set(engines)))
        rows.append([
            limit, users, answered_by, ms(percentile(seconds, 0.5)), ms(percentile(seconds, 0.99)), ms(max(seconds)),
            ms(bound), met(max(seconds) <= bound), brain.calls, breaker_after,
            f"{brain.calls_while_open}/{users} ({brain.calls_while_open / users:.0%})",
            met(brain.calls_while_open == 0),
        ])
    return rows


class BrokenEngine:
    """Fails at once, in process: trips its breaker without any I/O."""

    name = "broken"
    context_window = 8192

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        raise EngineError(ErrorKind.UNAVAILABLE, "down for the benchmark")
        yield ""  # unreachable; makes this an async generator like every engine's stream

    async def aclose(self) -> None:
        pass


async def read_all(items: AsyncIterator[object]) -> None:
    async with aclosing(items) as opened:  # type: ignore[type-var]
        async for _ in opened:
            pass


async def bench_chain_overhead(turns: int) -> tuple[list[list[object]], float]:
    engine = bench_engine()
    alone = EngineChain([Tier(engine, 5.0)], EchoEngine(), max_tokens=400)
    skipping = EngineChain([Tier(BrokenEngine(), 5.0), Tier(engine, 5.0)], EchoEngine(), max_tokens=400)
    for _ in range(FAILURE_THRESHOLD):
        await read_all(skipping.stream(lambda budget: MESSAGES, 3000))
    assert skipping.status()[0].breaker == "open"

    ways = {
        "engine.stream, called directly": lambda: engine.stream(MESSAGES, 400),
        "chain.stream, one tier": lambda: alone.stream(lambda budget: MESSAGES, 3000),
        "chain.stream, brain's breaker open, next tier answers": lambda: skipping.stream(lambda budget: MESSAGES, 3000),
    }
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for round_ in range(turns + 200):
        for name, start in ways.items():
            started = time.perf_counter()
            await read_all(start())
            if round_ >= 200:  # the first rounds warm up
                samples[name].append(time.perf_counter() - started)

    direct, one_tier, skipped = samples.values()
    rows = [
        [name, us(percentile(taken, 0.5)), us(percentile(taken, 0.99)), "—", "—"] for name, taken in samples.items()
    ]
    overhead = [percentile(one_tier, q) - percentile(direct, q) for q in (0.5, 0.99)]
    skip_cost = [percentile(skipped, q) - percentile(one_tier, q) for q in (0.5, 0.99)]
    rows.append(["chain overhead (one tier − direct)", us(overhead[0]), us(overhead[1]), "—", "—"])
    rows.append(["skipping an open breaker (open − one tier)", us(skip_cost[0]), us(skip_cost[1]), "≤ 1 ms added",
                 verdict(skip_cost, 0.001)])
    return rows, overhead[0]


async def bench_service_turn(directory: Path, turns: int, chain_overhead_s: float) -> list[list[object]]:
    service = open_bench_service(await migrated_sqlite_database(directory, "failover.db"))
    try:
        samples = await turn_latencies(service, ConversationKey(1, "bench"), turns)
    finally:
        await service.close()
    p50 = percentile(samples, 0.5)
    return [[us(p50), us(percentile(samples, 0.99)), us(chain_overhead_s), f"{chain_overhead_s / p50:.1%}"]]


def verdict(added: Sequence[float], limit: float) -> str:
    return ", ".join(f"{label} {met(value <= limit)}" for label, value in zip(("p50", "p99"), added, strict=True))


async def run_failover_section(directory: Path, quick: bool) -> None:
    import_test_kit("failover", "tests.fakes.openai_server", "tests.helpers")
    allow_loopback_hub_calls()
    # The chain logs every failure: keep that cost in the figures, but not the noise on the terminal.
    with logging_while_measuring(discard=True):
        await _run(directory, quick)


async def _run(directory: Path, quick: bool) -> None:
    rounds, hang_rounds = (50, 10) if quick else (300, 50)
    turns = 500 if quick else 5000
    print_table(
        "Failover: time to the first chunk, real huggingface_hub client, local servers",
        ["case", "answered by", "answers", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "target", "result"],
        await bench_failover(rounds, hang_rounds),
    )
    print_table(
        f"Outage: {OUTAGE_USERS} users at once, brain hangs (deadline {BRAIN_DEADLINE_S:g} s), HF healthy "
        f"(deadline {OUTAGE_HF_DEADLINE_S:g} s), breaker threshold {FAILURE_THRESHOLD}: time to the complete answer",
        ["concurrent-call limit", "turns", "answered by", "p50 ms", "p99 ms", "max ms", "stated bound ms",
         "max ≤ bound", "calls reaching the brain", "brain's breaker after", "turns reaching the brain after its "
         "breaker opened", "target 0"],
        await bench_outage(OUTAGE_USERS, (2, 8)),
    )
    rows, chain_overhead = await bench_chain_overhead(turns)
    print_table(
        f"Chain overhead per answer, instant in-process engine ({turns} answers each)",
        ["path", "p50 µs", "p99 µs", "target", "result"],
        rows,
    )
    service_turns = 200 if quick else 2000
    print_table(
        f"Chain's share of a whole turn: ConversationService, instant engine, SQLite file ({service_turns} turns)",
        ["turn p50 µs", "turn p99 µs", "chain overhead p50 µs", "chain share of p50"],
        await bench_service_turn(directory, service_turns, chain_overhead),
    )
