"""The chain: ask each engine in turn until one answers, and remember which ones are down.

Each tier has a total deadline, its own limit of concurrent calls and a circuit breaker. A failure before or
during the stream moves to the next tier; text a failed engine already streamed is thrown away, and the next
`EngineStarted` tells the front end to replace what it showed. Echo answers when every tier failed, so a user
always gets an answer, and within `EngineChain.answer_bound_s`:

- A tier never holds a turn longer than its deadline and a short grace for a stuck engine's cleanup: waiting for
  one of its call slots counts against the deadline, and so does the one retry with a smaller window. Tiers
  never queue behind each other. A turn that had to queue for a slot and then ran out of time moves on as BUSY:
  the engine did not have its whole deadline, so that timeout says "full", not "broken".
- An engine that serves one answer at a time (it is `Reserving`, the local model) queues turns itself; that
  wait has its own allowance of one deadline, so the answer's deadline starts once the engine is free.
- The breaker is checked before waiting (an open one costs nothing) and again once a slot is had: turns that
  queued while the engine failed do not reach it after its breaker opened.

Background work (the rolling summary) gets one complete answer through `complete`, from the engines it names, through
the same breakers and call slots, and never at a turn's expense: it takes a slot only when one is free at once (it
never queues), never starts on a one-at-a-time engine that a turn is using or waiting for, and gives its slot up
when a turn finds the tier full: the turn cancels it, and the background answer is thrown away as BUSY.

Text from engines is made valid Unicode chunk by chunk (a surrogate pair split across two chunks is joined),
so what is counted, stored and shown can always be encoded. A reasoning model's `<think>` blocks are taken out of
every engine's text on the way (`reasoning.ReasoningFilter`; echo's own text is left as it is): an engine that
only thought gave an empty answer, and the next engine is asked. How long the engine that answered thought
(`Reasoned`, measured here for `<think>` blocks, or reported by the engine) closes its stream with its usage.

What an answer cost (`TokenUsage`, when its engine reports it) closes the stream, after the text; the usage of an
engine that failed, or answered nothing, is never passed on. A turn may ask a tier for another model than its
default (`models`, for engines that are `ServesModels`); the tier is the same tier, breaker and slots included.

The newest user message's images are rendered for each engine right before it is asked (`images.for_engine`):
content parts for an engine that `SeesImages`, a text note for any other (echo included), so a vision tier that
fails hands the same turn to a text-only one.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import traceback
import types
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from app.engines.breaker import BreakerState, CircuitBreaker, Permit
from app.engines.contract import (
    ECHO,
    ChatMessage,
    Engine,
    EngineError,
    EngineStarted,
    ErrorKind,
    Reasoned,
    ReportsStatus,
    Reserving,
    SeesImages,
    ServesModels,
    TokenUsage,
    WarmStart,
)
from app.engines.images import for_engine
from app.engines.observer import NO_OBSERVER, ChainObserver
from app.engines.reasoning import ReasoningFilter
from app.safe_text import error_cause, redact_url_credentials, valid_unicode

log = logging.getLogger(__name__)

BuildMessages = Callable[[int], list[ChatMessage]]


@dataclass(frozen=True)
class Tier:
    engine: Engine
    deadline_s: float  # total deadline for one answer


@dataclass(frozen=True, slots=True)
class Completion:
    """One complete answer from `EngineChain.complete`, and the engine that wrote it."""

    text: str
    engine: str


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


class BreakerRule(enum.Enum):
    """What a failure says about the engine, and so what it does to the engine's shared breaker."""

    ENGINE_UNHEALTHY = "engine unhealthy"  # counts toward opening the breaker: every user would meet it
    REQUEST_SPECIFIC = "request specific"  # this turn moves on; the breaker is untouched (a probe: inconclusive)
    NOT_NOW = "not now"  # the engine is full: this turn moves on; the breaker is untouched


BREAKER_RULES: dict[ErrorKind, BreakerRule] = {
    # No complete answer within the deadline: hung, overloaded or unreachable.
    ErrorKind.TIMEOUT: BreakerRule.ENGINE_UNHEALTHY,
    # 5xx, connection refused or reset, malformed output, an error event, an empty answer, or a bug while
    # handling the engine's output.
    ErrorKind.UNAVAILABLE: BreakerRule.ENGINE_UNHEALTHY,
    # 429: the quota is the account's, shared by every user; a Retry-After sets how long the breaker stays open.
    ErrorKind.RATE_LIMITED: BreakerRule.ENGINE_UNHEALTHY,
    # 401/403: a rejected key fails every request alike; the breaker opens at once.
    ErrorKind.AUTH: BreakerRule.ENGINE_UNHEALTHY,
    # 400/422 and the like: a content-policy refusal or a validation error of this request only.
    ErrorKind.BAD_REQUEST: BreakerRule.REQUEST_SPECIFIC,
    # Still too long after the one retry with half the window: this conversation's window, not the engine.
    ErrorKind.CONTEXT_TOO_LONG: BreakerRule.REQUEST_SPECIFIC,
    # No call slot within the deadline, or the local model's queue is full.
    ErrorKind.BUSY: BreakerRule.NOT_NOW,
}


class _Link:
    """One engine of the chain with its breaker, its call slots and its figures. The engine's optional
    capabilities are looked at once, here: `reserving`, `warm_start`, `reports_status` and `serves_models` are
    the engine itself when it has that capability, else None; `sees_images` says whether it takes image parts."""

    def __init__(
        self, engine: Engine, deadline_s: float | None, breaker: CircuitBreaker, max_concurrent_calls: int
    ) -> None:
        self.engine = engine
        self.deadline_s = deadline_s
        self.breaker = breaker
        self.max_concurrent_calls = max_concurrent_calls
        self.slots = asyncio.Semaphore(max_concurrent_calls)
        self.reserving: Reserving | None = engine if isinstance(engine, Reserving) else None
        self.warm_start: WarmStart | None = engine if isinstance(engine, WarmStart) else None
        self.reports_status: ReportsStatus | None = engine if isinstance(engine, ReportsStatus) else None
        self.serves_models: ServesModels | None = engine if isinstance(engine, ServesModels) else None
        self.sees_images = isinstance(engine, SeesImages) and engine.sees_images is True
        self.calls = 0
        self.failures = 0
        self.last_latency_s: float | None = None
        self.last_error_kind: ErrorKind | None = None
        self.turns = 0  # turns waiting for this engine or answering from it now
        self.background: set[asyncio.Task[Completion]] = set()  # `complete` calls on this engine, each its own task

    def make_room_for_turn(self) -> None:
        """A turn wants this engine: if background calls hold what the turn needs, they give it up (cancelled)."""
        waiting = [call for call in self.background if not call.cancelling()]
        if not waiting:
            return
        if self.reserving is not None:
            for call in waiting:  # one answer at a time: the turn needs the engine itself
                call.cancel()
        elif self.slots.locked():
            waiting[0].cancel()  # its slot goes to the turn, the first in the semaphore's line

    def leave_as_turn(self) -> None:
        self.turns -= 1

    def engine_for(self, models: Mapping[str, str] | None) -> Engine:
        """The engine to ask: asking for the model `models` names for this tier, when it serves models."""
        if models is None or self.serves_models is None:
            return self.engine
        model = models.get(self.engine.name)
        return self.engine if model is None else self.serves_models.with_model(model)

    @property
    def bound_s(self) -> float:
        """The longest this tier holds a turn: its deadline, after at most one deadline in the engine's own queue,
        and the grace its stream gets to close."""
        if self.deadline_s is None:
            return 0.0
        return (2 * self.deadline_s if self.reserving is not None else self.deadline_s) + STREAM_CLOSE_GRACE_S

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
            details=self.reports_status.status_details() if self.reports_status is not None else {},
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
        """`max_concurrent_calls` is per tier; a `Reserving` engine queues its turns itself instead."""

        def breaker() -> CircuitBreaker:
            return CircuitBreaker(failure_threshold, open_for_s, clock)

        self._links = [_Link(tier.engine, tier.deadline_s, breaker(), max_concurrent_calls) for tier in tiers]
        self._echo = _Link(echo, None, breaker(), max_concurrent_calls)
        self._max_tokens = max_tokens
        self._unconfigured = list(unconfigured)
        self.observer: ChainObserver = NO_OBSERVER  # the operator's metrics (see app/engines/observer)

    @property
    def answer_bound_s(self) -> float:
        """The longest one answer can take, every wait included: each tier's bound (its deadline, twice it for an
        engine that queues turns itself, and the grace to close its stream), plus a margin for echo. Time the
        consumer holds a chunk (a front end showing it) is not the engines' and is not counted."""
        return sum(link.bound_s for link in self._links) + ANSWER_BOUND_MARGIN_S

    def models_served(self) -> dict[str, str]:
        """Each tier that can be asked for another model (`ServesModels`): its engine's name -> its default model."""
        return {link.engine.name: link.serves_models.model for link in self._links if link.serves_models is not None}

    def status(self) -> list[EngineStatus]:
        configured = [link.status() for link in (*self._links, self._echo)]
        return configured[:-1] + [EngineStatus.not_configured(name) for name in self._unconfigured] + configured[-1:]

    async def start(self) -> None:
        """Warm up the engines that can load ahead of the first turn (`WarmStart`: the local model)."""
        for link in self._links:
            if link.warm_start is not None:
                try:
                    await link.warm_start.start()
                except Exception as error:  # a brain that cannot start is skipped like any failing engine
                    log.warning("engine %s could not start: %s", link.engine.name, error_cause(error))

    async def aclose(self) -> None:
        for link in (*self._links, self._echo):
            try:
                await link.engine.aclose()
            except Exception:
                log.exception("closing engine %s failed", link.engine.name)

    async def stream(
        self,
        build_messages: BuildMessages,
        history_budget: int,
        prefer: str | None = None,
        models: Mapping[str, str] | None = None,
        avoid: str | None = None,
    ) -> AsyncIterator[EngineStarted | str | Reasoned | TokenUsage]:
        """Stream one answer: `EngineStarted` before the first chunk of each engine that answers, then text, and
        last, when the engine that answered reasoned, `Reasoned`, and when it reported it, the answer's
        `TokenUsage` (never one of an engine that failed: the answer shown is the only one charged).

        `build_messages(budget)` returns the window of system prompt, history and new message in `budget` tokens.
        `models` maps a tier's engine name to the model to ask that tier for (a tier that does not serve models
        is asked as usual). The tier stays itself: its deadline, call slots and breaker are the same whatever
        model it is asked for, so a chosen model that fails opens the tier's breaker for every turn. That is
        the design: the operator vouches for each model a server may choose. `avoid` (an engine's name) is asked
        last of the tiers: another healthy tier answers if there is one, else it still does.
        """
        showed_partial = False
        for link in self._in_order(prefer, avoid):
            if not link.breaker.would_allow():
                continue
            async with AsyncExitStack() as admission:
                link.turns += 1
                admission.callback(link.leave_as_turn)
                link.make_room_for_turn()
                try:
                    deadline, queued = await self._admit(link, admission)
                except Exception as error:
                    self._record_failure(link, _as_engine_error(error), cause=error, permit=None)
                    continue
                permit = link.breaker.try_acquire()
                if permit is None:
                    continue  # it opened, or another turn took the probe, while this one waited for a slot
                engine = link.engine_for(models)
                for halvings in range(2):  # asked again with half the window only when the first was too long
                    started = False
                    usage: TokenUsage | None = None
                    reasoned: Reasoned | None = None
                    try:
                        budget = min(history_budget, link.engine.context_window - self._max_tokens) // 2**halvings
                        answer = self._call(link, build_messages(budget), showed_partial, deadline, engine=engine)
                        async with aclosing(answer) as items:
                            async for item in items:
                                if isinstance(item, TokenUsage):  # held until the answer is whole; the last counts
                                    usage = item
                                    continue
                                if isinstance(item, Reasoned):  # held too; the chain's and the engine's own: the longer
                                    reasoned = item if reasoned is None or item.seconds > reasoned.seconds else reasoned
                                    continue
                                started = True
                                yield item
                        if not started and reasoned is not None:
                            # Out of tokens while thinking, most likely: this request's, not a sick engine (its
                            # breaker stays as it is).
                            raise EngineError(ErrorKind.BAD_REQUEST, f"only reasoning, no answer ({MORE_TOKENS})")
                        if not started:
                            raise EngineError(ErrorKind.UNAVAILABLE, "empty answer")
                    except Exception as error:  # any error while handling this engine is this engine's failure
                        showed_partial |= started
                        failure = _as_engine_error(error)
                        if failure.kind is ErrorKind.TIMEOUT and queued:
                            failure = EngineError(ErrorKind.BUSY, "out of time after queueing for a call slot")
                        if failure.kind is ErrorKind.CONTEXT_TOO_LONG and halvings == 0 and not started:
                            log.warning(
                                "engine %s failed (%s), retrying once with half the window: %s",
                                link.engine.name, failure.kind.value, redact_url_credentials(failure.message),
                            )
                            continue
                        self._record_failure(link, failure, cause=error, permit=permit)
                        break
                    except BaseException:
                        link.breaker.release(permit)  # cancelled or abandoned: not the engine's fault
                        raise
                    link.breaker.record_success()
                    if reasoned is not None:
                        yield reasoned
                    if usage is not None:
                        yield usage
                    return

        echo_budget = min(history_budget, self._echo.engine.context_window - self._max_tokens)
        async with aclosing(self._call(self._echo, build_messages(echo_budget), showed_partial, None)) as items:
            async for item in items:
                yield item

    async def complete(
        self,
        build_messages: BuildMessages,
        *,
        engines: Sequence[str],
        max_tokens: int,
        history_budget: int | None = None,
    ) -> Completion:
        """One complete answer from the first of `engines` (names, in order) that is healthy and free now: for
        background work, which must never delay a turn. Never echo.

        Each engine is skipped at once when its breaker is open, when all its call slots are taken, or (one that
        serves one answer at a time) when a turn is using or waiting for it; a turn that later finds the engine
        full cancels the call, which then counts as BUSY and the next engine is asked. The engine's deadline,
        breaker rules and the one retry with half the window are those of a turn. `build_messages(budget)` is
        called for each engine tried, with `min(history_budget, context window - max_tokens)`; the last call
        built the request that was answered.

        Raises EngineError: of the engines' own kind when they all failed alike (BUSY when every engine was only
        busy, BAD_REQUEST when each refused the request), UNAVAILABLE otherwise.
        """
        links = [link for name in engines for link in self._links if link.engine.name == name != ECHO]
        failures: list[tuple[str, EngineError]] = []
        for link in links:
            call = asyncio.create_task(self._complete_on(link, build_messages, max_tokens, history_budget))
            link.background.add(call)
            try:
                return await call
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # our caller's own cancellation (the call was cancelled with it)
                failures.append((link.engine.name, EngineError(ErrorKind.BUSY, "gave its slot to a turn")))
            except EngineError as failure:
                failures.append((link.engine.name, failure))
            finally:
                link.background.discard(call)
        if not links:
            raise EngineError(ErrorKind.UNAVAILABLE, f"none of the engines {list(engines)} is in the chain")
        kinds = {failure.kind for _, failure in failures}
        kind = kinds.pop() if len(kinds) == 1 else ErrorKind.UNAVAILABLE
        raise EngineError(kind, "; ".join(f"{name}: {failure.message}" for name, failure in failures))

    async def _complete_on(
        self, link: _Link, build_messages: BuildMessages, max_tokens: int, history_budget: int | None
    ) -> Completion:
        if not link.breaker.would_allow():
            raise EngineError(ErrorKind.UNAVAILABLE, "its breaker is open")
        async with AsyncExitStack() as admission:
            deadline = await self._admit_background(link, admission)
            permit = link.breaker.try_acquire()
            if permit is None:
                raise EngineError(ErrorKind.UNAVAILABLE, "its breaker opened")
            room = link.engine.context_window - max_tokens
            budget = room if history_budget is None else min(history_budget, room)
            for halvings in range(2):
                parts: list[str] = []
                try:
                    answer = self._call(link, build_messages(budget // 2**halvings), False, deadline, max_tokens)
                    async with aclosing(answer) as items:
                        async for item in items:
                            if isinstance(item, str):
                                parts.append(item)
                    if not parts:
                        raise EngineError(ErrorKind.UNAVAILABLE, "empty answer")
                except Exception as error:
                    failure = _as_engine_error(error)
                    if failure.kind is ErrorKind.CONTEXT_TOO_LONG and halvings == 0 and not parts:
                        continue
                    self._record_failure(link, failure, cause=error, permit=permit)
                    raise failure from None
                except BaseException:
                    link.breaker.release(permit)  # cancelled (by a turn, or by its caller): not the engine's fault
                    raise
                link.breaker.record_success()
                return Completion("".join(parts), link.engine.name)
        raise AssertionError("unreachable: the second try returns or raises")

    async def _admit_background(self, link: _Link, admission: AsyncExitStack) -> float:
        """Take the engine for a background call only if that makes no turn wait; return its answer's deadline."""
        loop = asyncio.get_running_loop()
        assert link.deadline_s is not None
        if link.reserving is not None:
            if link.turns:
                raise EngineError(ErrorKind.BUSY, "a turn is using it or waiting for it")
            try:
                async with asyncio.timeout(link.deadline_s):
                    await admission.enter_async_context(link.reserving.reserved())
            except TimeoutError:
                raise EngineError(ErrorKind.BUSY, f"still busy after {link.deadline_s:g} s") from None
            return loop.time() + link.deadline_s
        if link.slots.locked():
            raise EngineError(ErrorKind.BUSY, f"all {link.max_concurrent_calls} call slots are taken")
        await link.slots.acquire()  # free: taken without waiting
        admission.callback(link.slots.release)
        return loop.time() + link.deadline_s

    async def _admit(self, link: _Link, admission: AsyncExitStack) -> tuple[float, bool]:
        """Wait for the engine, within bounds; return the deadline (loop time) of its answer, and whether the
        turn queued for a call slot (so the engine gets less than its whole deadline).

        An engine that serves one answer at a time (the local model) is waited for before its deadline starts:
        otherwise a queued turn would spend its deadline waiting, time out (mid-stream, even) and charge the
        breaker of a healthy engine. Any other engine has `max_concurrent_calls` slots, and the wait for one is
        part of the tier's deadline. Waiting longer than the deadline is BUSY: "not now", not "broken".
        """
        loop = asyncio.get_running_loop()
        assert link.deadline_s is not None
        if link.reserving is not None:
            try:
                async with asyncio.timeout(link.deadline_s):
                    await admission.enter_async_context(link.reserving.reserved())
            except TimeoutError:
                raise EngineError(
                    ErrorKind.BUSY, f"still waiting for the engine after {link.deadline_s:g} s"
                ) from None
            return loop.time() + link.deadline_s, False
        deadline = loop.time() + link.deadline_s
        queued = link.slots.locked()
        try:
            async with asyncio.timeout_at(deadline):
                await link.slots.acquire()
        except TimeoutError:
            raise EngineError(
                ErrorKind.BUSY,
                f"all {link.max_concurrent_calls} call slots stayed taken for the whole deadline "
                f"({link.deadline_s:g} s)",
            ) from None
        admission.callback(link.slots.release)
        return deadline, queued

    def _in_order(self, prefer: str | None, avoid: str | None = None) -> list[_Link]:
        preferred = [link for link in self._links if link.engine.name == prefer]
        ordered = preferred + [link for link in self._links if link not in preferred]
        return [link for link in ordered if link.engine.name != avoid] + [
            link for link in ordered if link.engine.name == avoid
        ]

    async def _call(
        self,
        link: _Link,
        messages: list[ChatMessage],
        replaces_partial: bool,
        deadline: float | None,
        max_tokens: int | None = None,
        *,
        engine: Engine | None = None,
    ) -> AsyncIterator[EngineStarted | str | Reasoned | TokenUsage]:
        """`EngineStarted` and the engine's chunks as valid text without reasoning (its `TokenUsage` and `Reasoned`
        reports as they come, neither text nor a start; a `Reasoned` for its `<think>` blocks last), before
        `deadline` (loop time; None: no limit), in at most `max_tokens` (None: the chain's). `engine`: the link's
        engine asking for another model (None: the link's own).

        The deadline covers the engine's time only: time the consumer holds a chunk does not count, neither in the
        deadline nor in how long the engine thought.
        """
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        link.calls += 1
        first = True
        held_back = ""
        held_s = 0.0  # the consumer's time holding chunks, so far
        thoughts = None if link is self._echo else ReasoningFilter()  # echo's text is ours, quoting the user
        thought_until = started_at
        asked = link.engine if engine is None else engine
        sent = for_engine(messages, sees_images=link.sees_images)  # the turn's images: parts, or notes
        chunks = asked.stream(sent, self._max_tokens if max_tokens is None else max_tokens)
        try:
            while True:
                # A deadline per step, never around a `yield`: a timeout must not fire in the consumer's code. The
                # deadline cancels the engine; if its cleanup hangs, the second, a grace later, cancels it again.
                cleanup_deadline = None if deadline is None else deadline + STREAM_CLOSE_GRACE_S
                async with asyncio.timeout_at(cleanup_deadline), asyncio.timeout_at(deadline):
                    chunk = await anext(chunks, _END)
                ended = chunk is _END
                if ended:
                    text, held_back = valid_unicode(held_back), ""
                elif isinstance(chunk, str):
                    text, held_back = _valid_text(held_back, chunk)
                elif isinstance(chunk, TokenUsage | Reasoned):
                    yield chunk  # as it came: `stream` passes it on only once the answer is whole
                    continue
                else:
                    raise TypeError(f"the engine yielded {type(chunk).__name__}, not text")
                if thoughts is not None:
                    text = thoughts.feed(text) + (thoughts.finish() if ended else "")
                    if thoughts.reasoned_in_last:
                        thought_until = loop.time() - held_s
                    if thoughts.retracted:  # what was shown was thought: the front end replaces it
                        thoughts.retracted = False
                        if not first:
                            yield EngineStarted(link.engine.name, replaces_partial=True)
                if text:
                    if first:
                        first = False
                        link.last_latency_s = loop.time() - started_at
                        self.observer.first_chunk(link.engine.name, link.last_latency_s)
                        yield EngineStarted(link.engine.name, replaces_partial)
                    held_from = loop.time()
                    yield text
                    held_s += loop.time() - held_from
                    if deadline is not None:
                        deadline += loop.time() - held_from
                if ended:
                    self.observer.answered(link.engine.name, loop.time() - started_at - held_s)
                    if thoughts is not None and thoughts.reasoned:
                        yield Reasoned(thought_until - started_at)
                    return
        finally:
            await _close_within(chunks, STREAM_CLOSE_GRACE_S, link.engine.name)

    def _record_failure(
        self, link: _Link, failure: EngineError, cause: Exception, *, permit: Permit | None
    ) -> None:
        """Count the failure, and apply its `BREAKER_RULES`. `permit`: the call's from `try_acquire`; None for a
        failure before the call (in the engine's own queue), charged only if the breaker lets a call through."""
        link.failures += 1
        link.last_error_kind = failure.kind
        self.observer.failed(link.engine.name, failure.kind)
        unhealthy = BREAKER_RULES[failure.kind] is BreakerRule.ENGINE_UNHEALTHY
        if permit is None and unhealthy:
            permit = link.breaker.try_acquire()
        if permit is not None and unhealthy:
            open_now = failure.kind is ErrorKind.AUTH
            link.breaker.record_failure(permit, open_now=open_now, open_for_s=_open_for_s(failure))
        elif permit is not None:
            link.breaker.release(permit)  # says nothing about the engine's health: a probe is inconclusive
        unexpected = not isinstance(cause, EngineError | TimeoutError)  # a bug in the engine or ours: show where
        where = "\n" + "".join(traceback.format_exception(cause)).rstrip() if unexpected else ""
        log.warning(
            "engine %s failed (%s): %s",
            link.engine.name, failure.kind.value, redact_url_credentials(failure.message + where),
        )


ANSWER_BOUND_MARGIN_S = 1.0
MORE_TOKENS = "a reasoning model may need a larger MAX_TOKENS"
STREAM_CLOSE_GRACE_S = 0.5  # for an engine's cleanup once cancelled or closed: local work; longer is stuck
_END = object()
_HONOURS_RETRY_AFTER = (ErrorKind.RATE_LIMITED, ErrorKind.UNAVAILABLE)
MAX_RETRY_AFTER_S = 15 * 60


def _open_for_s(failure: EngineError) -> float | None:
    """How long the breaker stays open for this failure: its Retry-After, capped so that a half-open probe still
    comes even when the server asks for a day; None for the breaker's own period."""
    if failure.kind not in _HONOURS_RETRY_AFTER or failure.retry_after is None:
        return None
    return min(failure.retry_after, MAX_RETRY_AFTER_S)


def _valid_text(held_back: str, chunk: str) -> tuple[str, str]:
    """The chunk (after what was held back) as valid text, and a trailing high surrogate to hold back: its
    partner may open the next chunk, and together they are one character."""
    text = held_back + chunk
    if text and "\ud800" <= text[-1] <= "\udbff":
        return valid_unicode(text[:-1]), text[-1]
    return valid_unicode(text), ""


@runtime_checkable
class _ClosableStream(Protocol):
    async def aclose(self) -> None: ...


async def _close_within(chunks: AsyncIterator[str], grace_s: float, engine: str) -> None:
    """Close an engine's stream, giving its cleanup at most `grace_s`: a cleanup that hangs must not hold the turn."""
    # Async generators first: a Protocol's isinstance costs microseconds, a turn's whole chain overhead ~30.
    if isinstance(chunks, types.AsyncGeneratorType):
        if chunks.ag_frame is None:  # it ended: nothing to close
            return
    elif not isinstance(chunks, _ClosableStream):
        return
    try:
        async with asyncio.timeout(grace_s):
            await chunks.aclose()
    except TimeoutError:
        log.warning("engine %s took more than %g s to close its stream; left behind", engine, grace_s)


def _as_engine_error(error: Exception) -> EngineError:
    if isinstance(error, EngineError):
        return error
    if isinstance(error, TimeoutError):
        return EngineError(ErrorKind.TIMEOUT, "no complete answer within the deadline")
    return EngineError(ErrorKind.UNAVAILABLE, f"{type(error).__name__} while handling the engine's answer")
