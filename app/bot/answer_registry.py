"""What the buttons under answers need in memory: the Stop of each turn being answered (by its turn id), and the
pages of each conversation's newest answer (bounded: the least recently answered conversations go first).

Only the newest answer of a conversation carries Regenerate: when a newer question is stored (or the conversation
is erased), the older answer's buttons are removed. After a restart this memory is empty; a press on an old
answer is then checked against the stored turns (the service refuses a turn that is not the newest).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from app.conversation.stopping import StopSignal
from app.storage import ConversationKey

MOST_CONVERSATIONS = 10_000


@dataclass(frozen=True, slots=True)
class NewestAnswer:
    turn_id: int
    pages: tuple[Any, ...]  # its messages, first to last: the last one carries the buttons


class AnswerRegistry:
    def __init__(self, most_conversations: int = MOST_CONVERSATIONS) -> None:
        self._most = most_conversations
        self._stops: dict[int, tuple[int, StopSignal]] = {}  # turn id -> its asker, its stop
        self._newest: OrderedDict[ConversationKey, NewestAnswer] = OrderedDict()

    def running(self, turn_id: int, asker_id: int, stop: StopSignal) -> None:
        self._stops[turn_id] = (asker_id, stop)

    def ended(self, turn_id: int, stop: StopSignal) -> None:
        if turn_id in self._stops and self._stops[turn_id][1] is stop:
            del self._stops[turn_id]

    def stop(self, turn_id: int, user_id: int) -> bool:
        """Stop the turn's answer; False if no answer of that turn, asked by `user_id`, is being made (a button's
        custom id is the client's to send: it is not trusted to name the asker)."""
        asker_id, stop = self._stops.get(turn_id, (None, None))
        if stop is None or asker_id != user_id:
            return False
        stop.request()
        return True

    def newest(self, key: ConversationKey) -> NewestAnswer | None:
        return self._newest.get(key)

    def is_newest(self, key: ConversationKey, message_id: int) -> bool:
        """False only when the conversation's newest answer is known and `message_id` is not one of its pages."""
        newest = self._newest.get(key)
        return newest is None or any(page.id == message_id for page in newest.pages)

    def pages_of(self, key: ConversationKey, message: Any) -> tuple[Any, ...]:
        """The pages of the answer whose last page is `message` (only that page, if the answer is not known)."""
        newest = self._newest.get(key)
        if newest is not None and newest.pages and newest.pages[-1].id == message.id:
            return newest.pages
        return (message,)

    def answered(self, key: ConversationKey, answer: NewestAnswer) -> None:
        self._newest[key] = answer
        self._newest.move_to_end(key)
        if len(self._newest) > self._most:
            self._newest.popitem(last=False)

    def take_newest(self, key: ConversationKey) -> NewestAnswer | None:
        """The conversation's newest answer, which is from now on unknown."""
        return self._newest.pop(key, None)

    def keys_of(self, user_id: int) -> list[ConversationKey]:
        return [key for key in self._newest if key.user_id == user_id]
