"""What `ConversationService.respond` streams to a front end, in order."""

from __future__ import annotations

from dataclasses import dataclass

from app.storage import ConversationKey, StorageUnavailable

__all__ = [
    "NO_MEMORY", "SORRY", "ConversationKey", "EmptyMessage", "EngineChosen", "FinalReply", "Notice",
    "StorageUnavailable", "TextChunk", "TurnEvent",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class EngineChosen:
    """An engine started answering. If `replaces_partial`, throw away the text shown so far: it failed mid-way."""

    engine: str
    replaces_partial: bool = False


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


TurnEvent = EngineChosen | TextChunk | Notice | FinalReply


# What a front end says when a turn fails: the same words in the terminal and on Discord.
SORRY = "Sorry — something went wrong on my side 😔 Please try again in a moment."
NO_MEMORY = "I can't reach my memory right now 😔 Please try again in a moment."


class EmptyMessage(ValueError):
    """The message had nothing to answer (only whitespace, zero-width characters or a bare mention)."""
