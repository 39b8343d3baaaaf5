"""The last window of a recently active conversation, kept in memory (SQLite).

A window is only as good as the file it was read from: SQLite's `PRAGMA data_version` changes when another
connection (another process, a tool, the engine's own pool) commits. The store reads it in every job that
uses a window, inside the job's write transaction (no other commit can come between the check and the use);
each change starts a new epoch, and a window of an older epoch is read again from the database. The store's
own inserts (one connection, which data_version does not count) keep its windows current as they happen, and
its resets start a new epoch. (Comparing the newest stored id is not enough: after a reset, SQLite hands out
the same row ids again.)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from app.storage.records import StoredMessage

MAX_CACHED_WINDOWS = 2000


@dataclass(slots=True)
class CachedWindow:
    epoch: int  # the store's epoch when this window was read from the database
    budget: int
    overhead: int
    messages: list[StoredMessage]  # oldest first, within `budget`
    spent: int
    older: bool  # older messages than these are stored
    never_sent: str | None  # the engine whose replies a window leaves out (see HistoryStore)

    @classmethod
    def of(
        cls,
        epoch: int,
        budget: int,
        overhead: int,
        messages: list[StoredMessage],
        older: bool,
        never_sent: str | None,
    ) -> CachedWindow:
        spent = sum(m.token_count + overhead for m in messages)
        return cls(epoch, budget, overhead, messages, spent, older, never_sent)

    def add(self, message: StoredMessage) -> None:
        if message.engine is not None and message.engine == self.never_sent:
            return
        self.messages.append(message)
        self.spent += message.token_count + self.overhead
        while self.spent > self.budget:
            dropped = self.messages.pop(0)
            self.spent -= dropped.token_count + self.overhead
            self.older = True

    def newest_within(self, budget: int) -> tuple[list[StoredMessage], bool]:
        """The newest messages that fit `budget`, and whether older ones are stored."""
        spent, start = 0, len(self.messages)
        while start > 0 and spent + self.messages[start - 1].token_count + self.overhead <= budget:
            start -= 1
            spent += self.messages[start].token_count + self.overhead
        return self.messages[start:], self.older or start > 0


class WindowCache:
    """Least recently used windows, at most MAX_CACHED_WINDOWS of them."""

    def __init__(self) -> None:
        self._windows: OrderedDict[int, CachedWindow] = OrderedDict()

    def get(self, conversation_id: int) -> CachedWindow | None:
        window = self._windows.get(conversation_id)
        if window is not None:
            self._windows.move_to_end(conversation_id)
        return window

    def put(self, conversation_id: int, window: CachedWindow) -> None:
        self._windows[conversation_id] = window
        self._windows.move_to_end(conversation_id)
        if len(self._windows) > MAX_CACHED_WINDOWS:
            self._windows.popitem(last=False)

    def forget(self, conversation_id: int) -> None:
        self._windows.pop(conversation_id, None)
