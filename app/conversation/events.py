"""What `ConversationService.respond` streams to a front end, in order.

Each engine that starts answering is announced by the engines' own `app.engines.EngineStarted`: front ends
import it from there.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.engines import EngineStarted
from app.storage import StorageUnavailable


@dataclass(frozen=True, slots=True)
class TextChunk:
    text: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should know about their turn (e.g. their message was cut to fit)."""

    text: str


@dataclass(frozen=True, slots=True)
class FinalReply:
    text: str
    engine: str
    latency_s: float
    thought_s: float | None = None  # how long a reasoning model thought, when the operator shows it; else None


TurnEvent = EngineStarted | TextChunk | Notice | FinalReply


# What a front end says when a turn fails: the same words in the terminal and on Discord.
SORRY = "Sorry — something went wrong on my side 😔 Please try again in a moment."
NO_MEMORY = "I can't reach my memory right now 😔 Please try again in a moment."


def failure_sentence(error: BaseException) -> str:
    """What a user is told when their turn or command failed with `error`."""
    return NO_MEMORY if isinstance(error, StorageUnavailable) else SORRY


class EmptyMessage(ValueError):
    """The message had nothing to answer (only whitespace, zero-width characters or a bare mention)."""
