"""What the chain tells an observer of its engines' answers (the operator's metrics), and the observer that
listens to nothing: the chain's default, so a chain without metrics pays one no-op call per event."""

from __future__ import annotations

from typing import Protocol

from app.engines.contract import ErrorKind


class ChainObserver(Protocol):
    def first_chunk(self, engine: str, seconds: float) -> None:
        """An engine's first text of one call came `seconds` after the call."""

    def answered(self, engine: str, seconds: float) -> None:
        """An engine's stream of one call ended whole, `seconds` after the call (the consumer's time not counted)."""

    def failed(self, engine: str, kind: ErrorKind) -> None:
        """An engine failed one call with this kind of error: the chain moves on to the next engine."""


class NoObserver:
    def first_chunk(self, engine: str, seconds: float) -> None:
        pass

    def answered(self, engine: str, seconds: float) -> None:
        pass

    def failed(self, engine: str, kind: ErrorKind) -> None:
        pass


NO_OBSERVER = NoObserver()
