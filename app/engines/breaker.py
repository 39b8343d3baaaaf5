"""A circuit breaker: stop calling an engine that is known to be down, and probe it again later.

closed     calls go through; `failure_threshold` consecutive failures open it.
open       calls are refused until the open period is over.
half_open  the period is over: exactly one call (the probe) goes through; its success closes the breaker,
           its failure opens it again, and a probe without a verdict (`release`) lets the next call probe.

`try_acquire` hands each call a permit that says whether it is the probe: a call let through before the
breaker opened may end while another call probes, and must not end that probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]
Permit = Literal["call", "probe"]


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 3,
        open_for_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self._failure_threshold = failure_threshold
        self._default_open_for_s = open_for_s
        self._clock = clock
        self._consecutive_failures = 0
        self._open_until: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._open_until is None:
            return "closed"
        return "open" if self._clock() < self._open_until else "half_open"

    def open_for_s(self) -> float | None:
        """Seconds until a probe is allowed, or None when the breaker is not open."""
        if self.state != "open":
            return None
        assert self._open_until is not None
        return self._open_until - self._clock()

    def would_allow(self) -> bool:
        """Would `try_acquire` say yes now? Takes nothing: for skipping an engine before waiting for it."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probe_in_flight)

    def try_acquire(self) -> Permit | None:
        """May a call go through now? None: no. When half-open, the caller that gets "probe" is the probe."""
        state = self.state
        if state == "closed":
            return "call"
        if state == "open" or self._probe_in_flight:
            return None
        self._probe_in_flight = True
        return "probe"

    def record_success(self) -> None:
        self._consecutive_failures = 0
        self._open_until = None
        self._probe_in_flight = False

    def record_failure(self, permit: Permit, *, open_now: bool = False, open_for_s: float | None = None) -> None:
        """Count a failure. `open_now` opens at once; `open_for_s` (a Retry-After) also sets the period."""
        self._consecutive_failures += 1
        failed_probe = permit == "probe"
        if failed_probe:
            self._probe_in_flight = False
        too_many = self._consecutive_failures >= self._failure_threshold
        if open_now or open_for_s is not None or failed_probe or too_many:
            period = self._default_open_for_s if open_for_s is None else open_for_s
            self._open_until = self._clock() + period

    def release(self, permit: Permit) -> None:
        """A call ended without a verdict on the engine (cancelled, busy, or refused for what it asked): if it was
        the probe, the next call may probe; the engine is not charged."""
        if permit == "probe":
            self._probe_in_flight = False
