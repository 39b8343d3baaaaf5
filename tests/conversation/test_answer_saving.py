"""An answer the user saw is stored: retried while SQLite is locked by another connection, kept in memory when
it cannot be written in time, written first at the conversation's next turn, and dropped by a reset."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from pathlib import Path

import pytest

from app.conversation.events import FinalReply
from app.conversation.service import ConversationService
from app.conversation.status import format_status
from app.engines import ChatMessage
from app.storage import ConversationKey, StorageUnavailable
from tests.helpers import conversation_service, history_store

ALICE = ConversationKey(user_id=1, scope="guild-1")
BUSY_TIMEOUT_S = 0.1  # how long a write waits for another connection's lock before SQLite gives up
SAVING_LOG = "app.conversation.shown_answers"


class SecondConnection:
    """Another program holding SQLite's write lock on the file (a backup, the `sqlite3` shell)."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None)

    def lock(self) -> None:
        self._connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")

    def close(self) -> None:
        self.release()
        self._connection.close()


class LockingEngine:
    """Answers at once, but lets the test do something (take the lock) once the user's message is stored."""

    name = "brain"
    context_window = 8192

    def __init__(self, while_answering: Callable[[], None] = lambda: None, answer: str = "reply to: {}") -> None:
        self.while_answering = while_answering
        self.answer = answer
        self.requests: list[list[ChatMessage]] = []

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        self.requests.append(list(messages))
        self.while_answering()
        yield self.answer.format(messages[-1]["content"])

    async def aclose(self) -> None:
        pass


@pytest.fixture
def database(migrated_sqlite_file: Path) -> Path:
    return migrated_sqlite_file


@pytest.fixture
async def open_service(database: Path) -> AsyncIterator[Callable[..., ConversationService]]:
    opened: list[ConversationService] = []

    def open_(engine: LockingEngine, save_answer_within_s: float) -> ConversationService:
        url = f"sqlite+aiosqlite:///{database}"
        # SQLite waits for a lock up to the busy timeout (the database timeout): short, so "locked longer" is quick.
        store = history_store(url, timeout_s=BUSY_TIMEOUT_S, window_budget=3000)
        service = conversation_service(store, [engine], save_answer_within_s=save_answer_within_s)
        opened.append(service)
        return service

    yield open_
    for service in opened:
        await service.close()


@pytest.fixture
def second_connection(database: Path) -> AsyncIterator[SecondConnection]:
    other = SecondConnection(database)
    yield other
    other.close()


async def turn(service: ConversationService, text: str) -> list:
    async with aclosing(service.respond(ALICE, "Alice", text)) as events:
        return [event async for event in events]


FIRST_THEN_SECOND = [
    ("user", "first"), ("assistant", "reply to: first"), ("user", "second"), ("assistant", "reply to: second"),
]  # fmt: skip


async def cancel_while_its_answer_is_written(service: ConversationService, text: str) -> None:
    """A turn whose answer was shown, cancelled while the answer's write waits for the lock (or retries)."""
    running = asyncio.create_task(turn(service, text))
    async with asyncio.timeout(60):  # the answer is shown at once; a failure, not a hang, if it never is
        while (await service.status()).unsaved_answers == 0:
            await asyncio.sleep(BUSY_TIMEOUT_S / 10)
    await asyncio.sleep(3 * BUSY_TIMEOUT_S)  # a write attempt or two failed; it is retrying
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


def stored(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT role, content FROM messages ORDER BY coalesce(turn_id, id), id").fetchall()


async def test_an_answer_is_stored_once_a_lock_longer_than_the_busy_timeout_is_released(
    open_service, second_connection: SecondConnection, database: Path
) -> None:
    def lock_for_a_while() -> None:
        second_connection.lock()
        asyncio.get_running_loop().call_later(10 * BUSY_TIMEOUT_S, second_connection.release)

    service = open_service(LockingEngine(lock_for_a_while), save_answer_within_s=30)
    events = await turn(service, "hello")

    assert isinstance(events[-1], FinalReply) and events[-1].text == "reply to: hello"
    assert stored(database) == [("user", "hello"), ("assistant", "reply to: hello")]


async def test_the_answer_is_shown_before_it_is_stored(
    open_service, second_connection: SecondConnection, database: Path
) -> None:
    service = open_service(LockingEngine(second_connection.lock), save_answer_within_s=30)
    async with aclosing(service.respond(ALICE, "Alice", "hello")) as events:
        async for event in events:
            if isinstance(event, FinalReply):
                assert stored(database) == [("user", "hello")], "the answer is shown first, then stored"
                second_connection.release()
    assert stored(database) == [("user", "hello"), ("assistant", "reply to: hello")]


async def test_an_answer_that_cannot_be_stored_in_time_is_written_before_the_next_turn(
    open_service, second_connection: SecondConnection, database: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = LockingEngine(second_connection.lock)
    service = open_service(engine, save_answer_within_s=5 * BUSY_TIMEOUT_S)
    with caplog.at_level(logging.ERROR):
        events = await turn(service, "first")  # shown, and no error for the user
    assert events[-1].text == "reply to: first"
    assert stored(database) == [("user", "first")]
    failure = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == SAVING_LOG]
    assert len(failure) == 1 and ALICE.log_id in failure[0] and "database is locked" in failure[0]
    assert "first" not in failure[0], "message text never reaches the log"
    assert (await service.status()).unsaved_answers == 1

    # Still locked at the next turn: the kept answer cannot go first, so the new message is not stored either.
    engine.while_answering = lambda: None
    with pytest.raises(StorageUnavailable):
        await turn(service, "second")
    assert stored(database) == [("user", "first")]

    second_connection.release()
    events = await turn(service, "third")
    assert events[-1].text == "reply to: third"
    assert stored(database) == [
        ("user", "first"), ("assistant", "reply to: first"), ("user", "third"), ("assistant", "reply to: third"),
    ]  # fmt: skip
    assert [m["content"] for m in engine.requests[-1][1:]] == ["first", "reply to: first", "third"]
    assert (await service.status()).unsaved_answers == 0


async def test_a_reset_drops_an_answer_kept_in_memory(
    open_service, second_connection: SecondConnection, database: Path
) -> None:
    engine = LockingEngine(second_connection.lock)
    service = open_service(engine, save_answer_within_s=2 * BUSY_TIMEOUT_S)
    await turn(service, "my secret")
    second_connection.release()
    engine.while_answering = lambda: None

    assert await service.reset(ALICE) == 1
    await turn(service, "fresh start")
    assert stored(database) == [("user", "fresh start"), ("assistant", "reply to: fresh start")]
    await service.close()
    assert stored(database) == [("user", "fresh start"), ("assistant", "reply to: fresh start")]


async def test_a_reset_the_database_refuses_forgets_nothing(
    open_service, second_connection: SecondConnection, database: Path
) -> None:
    engine = LockingEngine(second_connection.lock)
    service = open_service(engine, save_answer_within_s=2 * BUSY_TIMEOUT_S)
    await turn(service, "first")
    with pytest.raises(StorageUnavailable):
        await service.reset(ALICE)
    assert (await service.status()).unsaved_answers == 1, "the answer is still kept"

    second_connection.release()
    engine.while_answering = lambda: None
    await turn(service, "second")
    assert stored(database) == FIRST_THEN_SECOND


async def test_a_reset_after_a_turn_cancelled_while_its_answer_was_written_erases_that_answer(
    open_service, second_connection: SecondConnection, database: Path
) -> None:
    engine = LockingEngine(second_connection.lock)
    service = open_service(engine, save_answer_within_s=30)
    await cancel_while_its_answer_is_written(service, "my secret")
    second_connection.release()  # the write the cancelled turn left running can commit now

    assert await service.reset(ALICE) in (1, 2)
    engine.while_answering = lambda: None
    await turn(service, "fresh start")
    assert stored(database) == [("user", "fresh start"), ("assistant", "reply to: fresh start")]
    assert [m["content"] for m in engine.requests[-1][1:]] == ["fresh start"], "nothing erased reaches the engine"
    await service.close()
    assert stored(database) == [("user", "fresh start"), ("assistant", "reply to: fresh start")]


async def test_an_answer_kept_in_memory_is_written_at_close(
    open_service, second_connection: SecondConnection, database: Path
) -> None:
    service = open_service(LockingEngine(second_connection.lock), save_answer_within_s=2 * BUSY_TIMEOUT_S)
    await turn(service, "goodnight")
    second_connection.release()
    await service.close()
    assert stored(database) == [("user", "goodnight"), ("assistant", "reply to: goodnight")]


async def test_a_consumer_that_stops_after_the_answer_still_gets_it_stored(
    open_service, database: Path
) -> None:
    service = open_service(LockingEngine(), save_answer_within_s=30)
    async with aclosing(service.respond(ALICE, "Alice", "hello")) as events:
        async for event in events:
            if isinstance(event, FinalReply):
                break
    assert stored(database) == [("user", "hello"), ("assistant", "reply to: hello")]


async def test_a_turn_cancelled_while_its_answer_is_retried_keeps_it_for_the_next_turn_once(
    open_service, second_connection: SecondConnection, database: Path
) -> None:
    engine = LockingEngine(second_connection.lock)
    service = open_service(engine, save_answer_within_s=30)
    await cancel_while_its_answer_is_written(service, "first")
    second_connection.release()
    engine.while_answering = lambda: None
    await turn(service, "second")
    assert stored(database) == FIRST_THEN_SECOND


@pytest.mark.usefixtures("disk_of_current_size")
async def test_a_full_disk_shows_the_answer_and_health_says_the_database_cannot_write(
    open_service, database: Path
) -> None:
    long_answer = "a long answer " * 10_000  # more than the pages the file has left
    service = open_service(LockingEngine(answer=long_answer), save_answer_within_s=3 * BUSY_TIMEOUT_S)
    events = await turn(service, "tell me everything")
    assert isinstance(events[-1], FinalReply) and events[-1].text == long_answer, "no error over a shown answer"
    assert stored(database) == [("user", "tell me everything")]

    status = await service.status()
    assert status.database_round_trip_ms is not None, "reads still work"
    assert not status.database_ok
    assert status.database_write_failure == "database or disk is full" and status.unsaved_answers == 1
    assert "NOT WRITABLE (database or disk is full)" in format_status(status)


async def test_an_answer_the_database_rejects_for_good_is_shown_logged_and_not_retried(
    open_service, database: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sqlite3.connect(database) as connection:  # a rule of the database that no retry can satisfy
        connection.execute(
            "CREATE TRIGGER no_answers BEFORE INSERT ON messages WHEN NEW.role = 'assistant' "
            "BEGIN SELECT RAISE(ABORT, 'answers refused'); END"
        )
    service = open_service(LockingEngine(), save_answer_within_s=600)  # a retry would outlast the test
    with caplog.at_level(logging.ERROR):
        events = await turn(service, "my secret")
    assert isinstance(events[-1], FinalReply) and events[-1].text == "reply to: my secret"
    failure = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == SAVING_LOG]
    assert len(failure) == 1 and ALICE.log_id in failure[0] and "SQLITE_CONSTRAINT_TRIGGER" in failure[0], failure
    assert "secret" not in failure[0] and "refused" not in failure[0], "no message text, no driver message"
    assert (await service.status()).unsaved_answers == 0, "not kept: it could never be stored"
    assert stored(database) == [("user", "my secret")]
