"""The chain: ask each engine in turn until one answers, and remember which ones are down.

Each tier has a total deadline and a circuit breaker. A failure before or during the stream moves to the next
tier; text a failed engine already streamed is thrown away, and the next `EngineStarted` tells the front end
to replace what it showed. Echo answers when every tier failed, so a user always gets an answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from typing import Any

from app.engines.base import ChatMessage, Engine, EngineError, ErrorKind
from app.engines.breaker import BreakerState, CircuitBreaker

log = logging.getLogger(__name__)

BuildMessages = Callable[[int], list[ChatMessage]]


@dataclass(frozen=True)
class Tier:
    engine: Engine
    deadline_s: float  # total deadline for one answer


@dataclass(frozen=True)
class EngineStarted:
    """Yielded before an engine's first chunk. `replaces_partial`: discard the text shown so far this turn."""

    engine: str
    replaces_partial: bool


@dataclass(frozen=True)
class EngineStatus:
    name: str
    configured: bool
    breaker: BreakerState
    open_until: float | None  # seconds until the breaker lets a probe through; None when not open
    last_latency_s: float | None  # from the call to its first chunk, for the last call that produced one
    last_error_kind: str | None
    calls: int
    failures: int
    details: dict[str, Any] = field(default_factory=dict)  # what the engine tells of itself (the local model)

    @classmethod
    def not_configured(cls, name: str) -> EngineStatus:
        return cls(name, False, "closed", None, None, None, 0, 0)


class _Link:
    """One engine of the chain with its breaker and its figures."""

    def __init__(self, engine: Engine, deadline_s: float | None, breaker: CircuitBreaker) -> None:
        self.engine = engine
        self.deadline_s = deadline_s
        self.breaker = breaker
        self.calls = 0
        self.failures = 0
        self.last_latency_s: float | None = None
        self.last_error_kind: ErrorKind | None = None

    def status(self) -> EngineStatus:
        return EngineStatus(
            name=self.engine.name,
            configured=True,
            breaker=self.breaker.state,
            open_until=self.breaker.open_for_s(),
            last_latency_s=self.last_latency_s,
            last_error_kind=self.last_error_kind.value if self.last_error_kind else None,
            calls=self.calls,
            failures=self.failures,
            details=self.engine.status_details() if hasattr(self.engine, "status_details") else {},
        )


class EngineChain:
    def __init__(
        self,
        tiers: list[Tier],
        echo: Engine,
        *,
        max_tokens: int,
        failure_threshold: int = 3,
        open_for_s: float = 30.0,
        max_concurrent_calls: int = 8,
        unconfigured: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        def breaker() -> CircuitBreaker:
            return CircuitBreaker(failure_threshold, open_for_s, clock)

        self._links = [_Link(tier.engine, tier.deadline_s, breaker()) for tier in tiers]
        self._echo = _Link(echo, None, breaker())
        self._max_tokens = max_tokens
        self._calls = asyncio.Semaphore(max_concurrent_calls)
        self._unconfigured = list(unconfigured)

    @property
    def answer_bound_s(self) -> float:
        """The longest one answer can take, every wait included: each tier's deadline, plus a margin for echo."""
        return sum(link.deadline_s or 0.0 for link in self._links) + ANSWER_BOUND_MARGIN_S

    def status(self) -> list[EngineStatus]:
        configured = [link.status() for link in (*self._links, self._echo)]
        return configured[:-1] + [EngineStatus.not_configured(name) for name in self._unconfigured] + configured[-1:]

    async def start(self) -> None:
        """Warm up engines that can load ahead of the first turn (the local model)."""
        for link in self._links:
            if hasattr(link.engine, "start"):
                try:
                    await link.engine.start()
                except Exception as error:  # a brain that cannot start is skipped like any failing engine
                    log.warning("engine %s could not start: %s", link.engine.name, error)

    async def aclose(self) -> None:
        for link in (*self._links, self._echo):
            try:
                await link.engine.aclose()
            except Exception:
                log.exception("closing engine %s failed", link.engine.name)

    async def stream(
        self, build_messages: BuildMessages, history_budget: int, prefer: str | None = None
    ) -> AsyncIterator[EngineStarted | str]:
        """Stream one answer: `EngineStarted` before the first chunk of each engine that answers, then text.

        `build_messages(budget)` returns the window of system prompt, history and new message in `budget` tokens.
        """
        showed_partial = False
        for link in self._in_order(prefer):
            if not link.breaker.try_acquire():
                continue
            async with AsyncExitStack() as reservation:
                try:
                    await self._reserve(link, reservation)
                except EngineError as busy:
                    self._record_failure(link, busy, cause=busy)
                    continue
                except BaseException:
                    link.breaker.release()
                    raise
                budget = min(history_budget, link.engine.context_window - self._max_tokens)
                for attempt in range(2):
                    started = False
                    try:
                        answer = self._call(link, build_messages(budget), showed_partial)
                        async with self._calls, aclosing(answer) as items:
                            async for item in items:
                                started = True
                                yield item
                        if not started:
                            raise EngineError(ErrorKind.UNAVAILABLE, "empty answer")
                    except Exception as error:
                        showed_partial |= started
                        failure = _as_engine_error(error)
                        if failure.kind is ErrorKind.CONTEXT_TOO_LONG and attempt == 0 and not started:
                            budget //= 2
                            log.warning(
                                "engine %s failed (%s), retrying once with a budget of %d tokens: %s",
                                link.engine.name, failure.kind.value, budget, failure.message,
                            )
                            continue
                        self._record_failure(link, failure, cause=error)
                        break
                    except BaseException:
                        link.breaker.release()  # cancelled or abandoned: not the engine's fault
                        raise
                    link.breaker.record_success()
                    return

        echo_budget = min(history_budget, self._echo.engine.context_window - self._max_tokens)
        async with aclosing(self._call(self._echo, build_messages(echo_budget), showed_partial)) as items:
            async for item in items:
                yield item

    async def _reserve(self, link: _Link, stack: AsyncExitStack) -> None:
        """Wait for an engine that serves one answer at a time (the local model) before its deadline starts.

        Otherwise a queued turn would spend its deadline waiting, time out (mid-stream, even) and charge the
        breaker of a healthy engine. Waiting longer than the deadline is BUSY: "not now", not "broken".
        """
        reserved = getattr(link.engine, "reserved", None)
        if reserved is None:
            return
        try:
            async with asyncio.timeout(link.deadline_s):
                await stack.enter_async_context(reserved())
        except TimeoutError:
            raise EngineError(ErrorKind.BUSY, f"still waiting for the engine after {link.deadline_s:g} s") from None

    def _in_order(self, prefer: str | None) -> list[_Link]:
        preferred = [link for link in self._links if link.engine.name == prefer]
        return preferred + [link for link in self._links if link not in preferred]

    async def _call(
        self, link: _Link, messages: list[ChatMessage], replaces_partial: bool
    ) -> AsyncIterator[EngineStarted | str]:
        """`EngineStarted` and the engine's chunks, within its deadline.

        The deadline covers the engine's time only: time the consumer holds a chunk does not count.
        """
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        deadline = None if link.deadline_s is None else started_at + link.deadline_s
        link.calls += 1
        first = True
        async with aclosing(link.engine.stream(messages, self._max_tokens)) as chunks:
            while True:
                # A deadline per step, never around a `yield`: a timeout must not fire in the consumer's code.
                async with asyncio.timeout_at(deadline):
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        return
                if first:
                    first = False
                    link.last_latency_s = loop.time() - started_at
                    yield EngineStarted(link.engine.name, replaces_partial)
                held_from = loop.time()
                yield chunk
                if deadline is not None:
                    deadline += loop.time() - held_from

    def _record_failure(self, link: _Link, failure: EngineError, cause: Exception) -> None:
        link.failures += 1
        link.last_error_kind = failure.kind
        if failure.kind is ErrorKind.BUSY:
            link.breaker.release()  # a full queue says "not now", not "broken"
        else:
            open_now = failure.kind is ErrorKind.AUTH
            open_for_s = failure.retry_after if failure.kind in _HONOURS_RETRY_AFTER else None
            if open_for_s is not None:
                open_for_s = min(open_for_s, MAX_RETRY_AFTER_S)  # a half-open probe still comes, even if asked for a day
            link.breaker.record_failure(open_now=open_now, open_for_s=open_for_s)
        unexpected = not isinstance(cause, EngineError | TimeoutError)  # a bug in the engine: show where
        log.warning(
            "engine %s failed (%s): %s", link.engine.name, failure.kind.value, failure.message,
            exc_info=cause if unexpected else None,
        )


ANSWER_BOUND_MARGIN_S = 1.0
_HONOURS_RETRY_AFTER = (ErrorKind.RATE_LIMITED, ErrorKind.UNAVAILABLE)
MAX_RETRY_AFTER_S = 15 * 60


def _as_engine_error(error: Exception) -> EngineError:
    if isinstance(error, EngineError):
        return error
    if isinstance(error, TimeoutError):
        return EngineError(ErrorKind.TIMEOUT, "no complete answer within the deadline")
    return EngineError(ErrorKind.UNAVAILABLE, f"the engine raised {type(error).__name__} instead of EngineError")
