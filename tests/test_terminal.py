"""`kortana chat` with bad input: an invalid byte on stdin, a stdin that fails, a database that stops writing."""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.conversation import turn_display
from app.conversation.events import NO_MEMORY
from app.conversation.service import ConversationService
from app.storage import create_engine, migrate
from app.terminal import TERMINAL_KEY, chat
from tests.helpers import child_environment, conversation_service, history_store

BUSY_TIMEOUT_S = 0.1


@pytest.mark.parametrize("io_encoding", [None, "utf-8:strict"], ids=["locale default", "strict"])
def test_an_invalid_byte_on_stdin_is_answered_and_quit_still_works(tmp_path: Path, io_encoding: str | None) -> None:
    env = child_environment(
        "PYTHONIOENCODING", "LANG", "LC_CTYPE",
        LC_ALL="C", BRAIN="none", DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
    )  # fmt: skip
    if io_encoding:
        env["PYTHONIOENCODING"] = io_encoding
    result = subprocess.run(
        [sys.executable, "-m", "app", "chat"],
        input=b"hi\xff there\n/quit\n",
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=30,
    )
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "Traceback" not in stderr and "Exception" not in stderr, stderr
    assert "hi\ufffd there" in stdout, "the echo engine quotes the message, the bad byte replaced"
    assert "Goodbye" in stdout
    with sqlite3.connect(tmp_path / "c.db") as connection:
        stored = connection.execute("SELECT content FROM messages WHERE role = 'user'").fetchall()
    assert stored == [("hi\ufffd there",)]


@pytest.fixture
async def service(tmp_path: Path) -> ConversationService:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kortana.db'}"
    engine = create_engine(url, timeout_s=BUSY_TIMEOUT_S)  # a short busy timeout: "locked too long" is quick
    await migrate(engine)
    service = conversation_service(history_store(engine), save_answer_within_s=0.5)
    yield service
    await service.close()


def stdin_with(tmp_path: Path, text: str) -> io.TextIOWrapper:
    path = tmp_path / "stdin.txt"
    path.write_text(text, encoding="utf-8")
    return open(path, encoding="utf-8")  # noqa: SIM115 - chat reads it to the end


async def test_a_stdin_that_fails_ends_the_chat_with_a_logged_line_not_a_hang(
    service: ConversationService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = stdin_with(tmp_path, "hello\n")
    broken.close()  # reading a closed file raises in the reader thread
    out = io.StringIO()
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(chat(service, stdin=broken, out=out), timeout=30)  # it hung for good
    assert "Goodbye" in out.getvalue()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "input" in errors[0] and "closed file" in errors[0]


@pytest.mark.parametrize("line", ["second", "/reset"])
async def test_a_storage_failure_shows_the_memory_sentence_and_logs_the_conversation_and_cause(
    service: ConversationService, tmp_path: Path, caplog: pytest.LogCaptureFixture, line: str
) -> None:
    await chat(service, stdin=stdin_with(tmp_path, "first\n"), out=io.StringIO())
    other = sqlite3.connect(tmp_path / "kortana.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock longer than SQLite waits
    out = io.StringIO()
    try:
        with caplog.at_level(logging.ERROR):
            await chat(service, stdin=stdin_with(tmp_path, f"{line}\nstill there?\n"), out=out)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert NO_MEMORY in out.getvalue() and "Goodbye" in out.getvalue(), "the chat goes on"
    front_end = {"app.terminal", turn_display.log.name}  # a reset fails in the terminal's code, a turn in the ladder
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name in front_end]
    assert len(errors) == 2, errors
    assert all(TERMINAL_KEY.log_id in error and "database is locked" in error for error in errors)
    assert not any("second" in error or "still there" in error for error in errors), "message text never in logs"
