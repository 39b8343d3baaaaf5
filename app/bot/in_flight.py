"""The turns of messages being answered, by message id: what an edit or a deletion of the message changes.

An entry lives from the turn's acceptance to its end (the bot removes it then): the registry holds at most
the turns in flight. Before the turn starts (it waits in its line) an edit replaces its text; once it started,
the user's message is stored (or about to be: `stored_turn` waits for it, bounded) and an edit updates it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from app.bot.streaming import ReplyStream
from app.storage import ConversationKey


@dataclass(eq=False, slots=True)
class TurnInFlight:
    task: asyncio.Task[object]
    key: ConversationKey
    text: str  # what the turn asks: the message's, or its edited text until the turn starts
    files: tuple[str, ...] = ()  # the text's file blocks, kept after an edited text
    images: int = 0  # how many images the message has: their tokens stay in an edited message's count
    started: bool = False  # the service was asked: edits go to the stored message
    withdrawn: bool = False  # its message was deleted: the turn is cut, its reply deleted, its turn erased
    stream: ReplyStream | None = None  # where the answer shows, once the turn runs
    turn_id: int | None = None  # the stored user message's id
    _stored: asyncio.Event = field(default_factory=asyncio.Event)

    def note_stored(self, turn_id: int) -> None:
        self.turn_id = turn_id
        self._stored.set()

    async def stored_turn(self, bound_s: float) -> int | None:
        """The stored message's id, waiting at most `bound_s` for the turn to store it; None if it did not."""
        if self.turn_id is None and self.started:
            try:
                async with asyncio.timeout(bound_s):
                    await self._stored.wait()
            except TimeoutError:
                pass
        return self.turn_id

    def ended(self) -> None:
        self._stored.set()  # nobody waits for a message an ended turn will never store


class TurnsInFlight:
    def __init__(self) -> None:
        self._turns: dict[int, TurnInFlight] = {}

    def __len__(self) -> int:
        return len(self._turns)

    def track(self, message_id: int, turn: TurnInFlight) -> None:
        self._turns[message_id] = turn

    def get(self, message_id: int) -> TurnInFlight | None:
        return self._turns.get(message_id)

    def end(self, message_id: int, turn: TurnInFlight) -> None:
        if self._turns.get(message_id) is turn:
            del self._turns[message_id]
        turn.ended()
