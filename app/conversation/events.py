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
    stopped: bool = False  # its asker stopped it: the text is what was shown until then


TurnEvent = EngineStarted | TextChunk | Notice | FinalReply


# What a front end says when a turn fails: the same words in the terminal and on Discord.
SORRY = "Sorry — something went wrong on my side 😔 Please try again in a moment."
NO_MEMORY = "I can't reach my memory right now 😔 Please try again in a moment."
STOPPED_BEFORE_ANSWER = "Stopped before I said anything."
TURN_GONE = "That conversation was erased, so there is nothing to answer again."
NOT_NEWEST = "Only the newest answer can be regenerated."


def failure_sentence(error: BaseException) -> str:
    """What a user is told when their turn or command failed with `error`."""
    return NO_MEMORY if isinstance(error, StorageUnavailable) else SORRY


class TurnEnded(Exception):
    """The turn ended without an answer, and not by a fault: what the user is told is `sentence`."""

    sentence = SORRY


class StoppedBeforeAnswer(TurnEnded):
    """Its asker stopped the turn before any text came: nothing is stored as its answer."""

    sentence = STOPPED_BEFORE_ANSWER


class TurnGone(TurnEnded):
    """The turn to answer again was erased (a /reset, a /forget, its message deleted)."""

    sentence = TURN_GONE


class NotNewestTurn(TurnEnded):
    """Only the conversation's newest turn is answered again: later turns were built on this answer."""

    sentence = NOT_NEWEST


class EmptyMessage(ValueError):
    """The message had nothing to answer (only whitespace, zero-width characters or a bare mention)."""
