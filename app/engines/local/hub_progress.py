"""Download progress: huggingface_hub's own tqdm bar on a terminal; a log line every few seconds otherwise
(`kortana run` under a service manager, where a bar would be a flood of carriage returns)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

log = logging.getLogger(__name__)

LOG_EVERY_S = 5.0


class LoggedProgress:
    """Stands in for tqdm in `hf_hub_download(tqdm_class=...)`: huggingface_hub builds one per file with
    `desc`, `total` and `initial`, and calls `update(bytes)` for each chunk (negative when a resume restarts)."""

    def __init__(self, *, desc: str = "", total: int | None = None, initial: int = 0, **_: Any) -> None:
        self.desc = desc.rsplit("/", 1)[-1]  # huggingface_hub passes the URL cut to its last 40 characters
        self.total = total
        self.n = initial
        self._started = time.monotonic()
        self._initial = initial
        self._last_log = self._started
        log.info("downloading %s (%s)", self.desc, _size(total) if total else "size unknown")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.info("downloading %s: %s", self.desc, self._line(now))

    def close(self) -> None:
        now = time.monotonic()
        log.info("downloaded %s: %s in %.1f s", self.desc, _size(self.n), now - self._started)

    def __enter__(self) -> LoggedProgress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _line(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        speed = (self.n - self._initial) / elapsed
        done = (
            f"{_size(self.n)} of {_size(self.total)} ({100 * self.n / self.total:.0f} %)"
            if self.total
            else _size(self.n)
        )
        left = f", {(self.total - self.n) / speed:.0f} s left" if self.total and speed > 0 else ""
        return f"{done}, {_size(speed)}/s{left}"


def progress_for(stream: TextIO | None = None) -> type[Any] | None:
    """The progress class for `hf_hub_download`: None (its tqdm bar) on a terminal, LoggedProgress otherwise."""
    stream = stream or sys.stderr
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return None if terminal else LoggedProgress


def _size(size: float | None) -> str:
    if size is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"
