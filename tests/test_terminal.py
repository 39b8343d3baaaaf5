"""`kortana chat` with bad input: an invalid byte on stdin, a stdin that fails, a database that stops writing."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.conversation import turn_display
from app.conversation.events import NO_MEMORY
from app.conversation.service import ConversationService, MemoryReport
from app.storage import Summary, create_engine, migrate
from app.terminal import TERMINAL_KEY, chat, memory_lines
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


async def chat_lines(service: ConversationService, tmp_path: Path, *lines: str) -> str:
    out = io.StringIO()
    stdin = stdin_with(tmp_path, "".join(f"{line}\n" for line in lines))
    await asyncio.wait_for(chat(service, stdin=stdin, out=out), timeout=30)
    return out.getvalue()


async def test_memory_shows_how_many_messages_since_when_and_what_is_on(
    service: ConversationService, tmp_path: Path
) -> None:
    assert "I remember nothing" in await chat_lines(service, tmp_path, "/memory")
    out = await chat_lines(service, tmp_path, "my dog is Rex", "and my cat is Tom", "/memory")
    assert re.search(r"I remember 4 messages of our conversation, since \d{4}-\d\d-\d\d \d\d:\d\d\.", out)
    assert re.search(r"Recall of older messages: (on|off)\.", out)
    assert re.search(r"Summary of older messages: (on|off), none yet\.", out)


def test_memory_lines_show_the_summary_indented_and_what_is_off() -> None:
    summary = Summary("The user has a dog, Rex.\nThey live in Lyon.", 12, through_id=9, updated_at=datetime.now(UTC))
    text = memory_lines(MemoryReport(12, datetime.now(UTC), summary, recall_enabled=False, summary_enabled=True))
    assert "Recall of older messages: off." in text
    assert re.search(r"Summary of older messages: on, updated [\d-]+ [\d:]+:\n  The user has a dog, Rex.\n  They", text)


async def test_export_writes_markdown_or_json_by_the_files_name(service: ConversationService, tmp_path: Path) -> None:
    markdown, as_json = tmp_path / "our chat.md", tmp_path / "chat.JSON"
    out = await chat_lines(service, tmp_path, "my dog is Rex", f"/export {markdown}", f"/export {as_json}")
    assert f"Wrote 2 messages to {markdown}." in out and f"Wrote 2 messages to {as_json}." in out
    text = markdown.read_text(encoding="utf-8")
    assert "- Scope: terminal" in text and re.search(r"\*\*You\*\* · \d{4}-\d\d-\d\dT[\d:]+Z\n\n> my dog is Rex", text)
    assert "**Kor'tana** (echo) · " in text
    document = json.loads(as_json.read_text(encoding="utf-8"))
    assert [(m["role"], m["engine"]) for m in document["messages"]] == [("user", None), ("assistant", "echo")]
    assert document["messages"][0]["text"] == "my dog is Rex"


async def test_an_export_that_cannot_be_written_says_so_and_the_chat_goes_on(
    service: ConversationService, tmp_path: Path
) -> None:
    missing = tmp_path / "no such folder" / "chat.md"
    out = await chat_lines(service, tmp_path, "hello", f"/export {missing}", "/export", "still there?")
    assert f"Could not write {missing}: No such file or directory" in out
    assert "Name the file to write: /export FILE" in out
    assert "still there?" in out.split("Name the file")[1], "the chat answered the next line"


async def test_forget_asks_first_and_erases_only_on_yes(service: ConversationService, tmp_path: Path) -> None:
    out = await chat_lines(service, tmp_path, "remember the blue door", "/forget", "no")
    assert "Type yes to confirm" in out and "Nothing was erased." in out
    assert len(await service.export(TERMINAL_KEY)) == 2
    out = await chat_lines(service, tmp_path, "/forget")  # the input ends instead of an answer
    assert "Goodbye" in out and len(await service.export(TERMINAL_KEY)) == 2

    out = await chat_lines(service, tmp_path, "/forget", "YES", "hello again")
    assert "Erased 2 messages." in out
    assert [m.content for m in await service.export(TERMINAL_KEY) if m.role == "user"] == ["hello again"]
