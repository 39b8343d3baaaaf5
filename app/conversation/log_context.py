"""Logs an operator can follow: every line written during a turn carries its turn id and shard.

A front end opens `turn_logging(shard)` where a turn starts; the id lives in a context variable, so the lines
of the chain, the storage and any task the turn starts carry it too, whoever writes them. `configure_logging`
installs the one handler (text or JSON lines) with the filter that stamps each record.
"""

from __future__ import annotations

import json
import logging
import random
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO


@dataclass(frozen=True, slots=True)
class TurnLog:
    turn: str  # short random hex: unique enough to follow one turn, says nothing about whose it is
    shard: int | None


_current: ContextVar[TurnLog | None] = ContextVar("kortana_turn_log", default=None)
# From WARNING on even at LOG_LEVEL=DEBUG: chatty, and discord.py's HTTP and webhook loggers write at DEBUG the
# full URLs (an interaction's token is in its webhook's) and the payloads (the users' text).
NOISY_LOGGERS = (
    "httpx", "httpx2", "alembic.runtime.migration", "discord.gateway", "discord.client", "discord.http",
    "discord.webhook",
)  # fmt: skip
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(turn_tag)s: %(message)s"


def new_turn_id() -> str:
    # Only to tell turns apart in logs: no secret, so no system call for randomness on every turn.
    return f"{random.getrandbits(32):08x}"


class turn_logging:  # noqa: N801 - used as a function: `with turn_logging(shard):`
    """Every log line written inside (in this task and the tasks it starts) carries this turn's id and shard.
    (A class, not a generator: it runs on every turn, and a generator-based context manager costs more.)"""

    __slots__ = ("_token", "turn")

    def __init__(self, shard: int | None = None) -> None:
        self.turn = TurnLog(new_turn_id(), shard)

    def __enter__(self) -> TurnLog:
        self._token = _current.set(self.turn)
        return self.turn

    def __exit__(self, *_exc_info: object) -> None:
        _current.reset(self._token)


def current_turn() -> TurnLog | None:
    return _current.get()


class TurnFilter(logging.Filter):
    """Stamps each record with `turn` and `shard` (None outside a turn) and `turn_tag`, their text form."""

    def filter(self, record: logging.LogRecord) -> bool:
        turn = _current.get()
        record.turn = turn.turn if turn else None
        record.shard = turn.shard if turn else None
        if turn is None:
            record.turn_tag = ""
        elif turn.shard is None:
            record.turn_tag = f" [turn {turn.turn}]"
        else:
            record.turn_tag = f" [turn {turn.turn} shard {turn.shard}]"
        return True


class JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, turn, shard, and exc when any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "turn": getattr(record, "turn", None),
            "shard": getattr(record, "shard", None),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


def log_handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing `log_format` ("text" or "json") lines, each stamped with its turn."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(TurnFilter())
    return handler


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """The root logger's one handler, at `level` (as `logging.basicConfig`: nothing changes where the root logger
    already has handlers); the chattiest libraries only from WARNING on."""
    logging.basicConfig(level=level, handlers=[log_handler(log_format, stream)])
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
