"""`kortana chat`: the conversation service in a terminal, one line per turn, scriptable through stdin."""

from __future__ import annotations

import asyncio
import getpass
import io
import logging
import sys
import threading
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from app.conversation.events import NO_MEMORY
from app.conversation.export import Export, to_json, to_markdown
from app.conversation.log_context import turn_logging
from app.conversation.metrics import Metrics
from app.conversation.service import ConversationService, MemoryReport
from app.conversation.status import format_status
from app.conversation.turn_display import show_turn
from app.storage import ConversationKey, StorageUnavailable

log = logging.getLogger(__name__)
TERMINAL_KEY = ConversationKey(user_id=0, scope="terminal")
EMPTY_LINE = "Say something and I'll answer 🙂"
HELP = (
    "Type a message and press Enter. Commands: /memory shows what I remember, /export FILE saves our conversation "
    "(Markdown, or JSON when FILE ends in .json), /reset forgets our conversation, /forget erases everything I "
    "remember of you, /ping shows health, /quit ends."
)
FORGET_QUESTION = "This erases everything I remember of you, and cannot be undone. Type yes to confirm:"


async def chat(service: ConversationService, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
    # A byte the locale cannot decode (or a character the terminal cannot show) becomes U+FFFD / "?", never an
    # exception: a strict decoder killed the reader thread and the chat hung for good.
    _replace_undecodable(stdin)
    _replace_undecodable(out)
    author = _user_name()
    metrics = Metrics(process=False)  # what /ping tells of the turns since start
    service.watch_engines(metrics)
    out.write(f"Kor'tana is listening. {HELP}\n")
    out.flush()
    lines = _read_lines(stdin)
    while True:
        line = await lines.get()
        if line is None:  # end of input
            break
        command = line.strip()
        if command in {"/quit", "/exit"}:
            break
        name, _, argument = command.partition(" ")
        if command == "/reset":
            await _storage_command(_reset(service, out), "a reset", out)
        elif command == "/memory":
            await _storage_command(_memory(service, out), "showing the memory", out)
        elif name == "/export":
            await _storage_command(_export(service, argument.strip(), out), "an export", out)
        elif command == "/forget":
            if not await _confirmed_forget(service, lines, out):
                break
        elif command == "/ping":
            out.write(format_status(await service.status()) + "\n" + metrics.summary() + "\n")
        elif command == "/help":
            out.write(HELP + "\n")
        else:
            with turn_logging(), metrics.turn("terminal") as record:
                if not await _turn(service, author, line, out):
                    record.outcome = "failed"
        out.flush()
    out.write("Goodbye! 👋\n")
    out.flush()


async def _turn(service: ConversationService, author: str, text: str, out: TextIO) -> bool:
    out.write("Kor'tana: ")
    events = service.respond(TERMINAL_KEY, author, text)
    return await show_turn(events, TerminalLine(out), log_id=TERMINAL_KEY.log_id, brain_name=service.brain_name)


class TerminalLine:
    """A turn on the terminal: the answer streams onto the "Kor'tana:" line; a takeover or a notice opens a new one."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def add(self, chunk: str) -> None:
        self._out.write(chunk)
        self._out.flush()

    def restart(self, engine: str) -> None:
        self._out.write(f"\n[{engine} takes over]\nKor'tana: ")

    def notice(self, text: str) -> None:
        self._out.write(f"\n[{text}]\nKor'tana: ")

    async def show(self, text: str, answered_by: str | None) -> None:
        if answered_by is not None:  # the text itself has streamed already
            self._out.write(f"  [answered by {answered_by}]")
        self._out.write("\n")

    async def fail(self, sentence: str) -> None:
        self._out.write(f"\n{sentence}\n")

    async def nothing_to_answer(self) -> None:
        self._out.write(EMPTY_LINE + "\n")


async def _reset(service: ConversationService, out: TextIO) -> None:
    forgotten = await service.reset(TERMINAL_KEY)
    out.write(f"Forgot {_messages(forgotten)}. Fresh start!\n")


async def _storage_command(command: Awaitable[None], what: str, out: TextIO) -> None:
    try:
        await command
    except StorageUnavailable as error:
        log.error(
            "Conversation %s: %s failed, the database is unavailable (%s)", TERMINAL_KEY.log_id, what, error.cause
        )
        out.write(f"{NO_MEMORY}\n")


async def _memory(service: ConversationService, out: TextIO) -> None:
    out.write(memory_lines(await service.memory(TERMINAL_KEY)) + "\n")


def memory_lines(report: MemoryReport) -> str:
    if report.messages:
        since = f", since {_local_time(report.first_at)}" if report.first_at else ""
        lines = [f"I remember {_messages(report.messages)} of our conversation{since}."]
    else:
        lines = ["We haven't talked yet: I remember nothing."]
    lines.append(f"Recall of older messages: {'on' if report.recall_enabled else 'off'}.")
    summary = report.summary
    switched = "on" if report.summary_enabled else "off"
    if summary is None:
        lines.append(f"Summary of older messages: {switched}, none yet.")
    else:
        updated = f", updated {_local_time(summary.updated_at)}" if summary.updated_at else ""
        lines.append(f"Summary of older messages: {switched}{updated}:")
        lines.extend(f"  {line}" for line in summary.content.strip().split("\n"))
    return "\n".join(lines)


async def _export(service: ConversationService, file_name: str, out: TextIO) -> None:
    if not file_name:
        out.write("Name the file to write: /export FILE (Markdown, or JSON when FILE ends in .json)\n")
        return
    messages = await service.export(TERMINAL_KEY)
    export = Export(TERMINAL_KEY.scope, datetime.now(UTC), messages)
    try:
        path = await asyncio.to_thread(_write_export, export, file_name)
    except OSError as error:
        out.write(f"Could not write {file_name}: {error.strerror or error}\n")
        return
    out.write(f"Wrote {_messages(len(messages))} to {path}.\n")


def _write_export(export: Export, file_name: str) -> Path:
    path = Path(file_name).expanduser()
    path.write_text(to_json(export) if path.suffix.lower() == ".json" else to_markdown(export), encoding="utf-8")
    return path


async def _confirmed_forget(service: ConversationService, lines: asyncio.Queue[str | None], out: TextIO) -> bool:
    """Ask, then erase on "yes"; False when the input ended instead of an answer."""
    out.write(FORGET_QUESTION + "\n")
    out.flush()
    answer = await lines.get()
    if answer is None:
        return False
    if answer.strip().lower() == "yes":
        await _storage_command(_forget(service, out), "a /forget", out)
    else:
        out.write("Nothing was erased.\n")
    return True


async def _forget(service: ConversationService, out: TextIO) -> None:
    erased = await service.forget(TERMINAL_KEY.user_id)
    out.write(f"Erased {_messages(erased)}. It's as if we never met.\n")


def _messages(count: int) -> str:
    return f"{count} message{'s' if count != 1 else ''}"


def _local_time(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _read_lines(stdin: TextIO) -> asyncio.Queue[str | None]:
    """Lines of stdin, read by a daemon thread: a thread blocked in readline() must not keep Ctrl-C waiting
    (asyncio.to_thread's would, until Enter is pressed). None marks the end of input — also when reading
    fails, so the chat ends with a logged line instead of waiting for a thread that died."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def deliver(line: str | None) -> bool:
        try:
            loop.call_soon_threadsafe(lines.put_nowait, line)
            return True
        except RuntimeError:  # the loop closed first: nobody is reading any more
            return False

    def pump() -> None:
        try:
            for line in iter(stdin.readline, ""):
                if not deliver(line):
                    return
        except Exception as error:
            log.error("Stopped reading the input: %s: %s", type(error).__name__, error)
        deliver(None)

    threading.Thread(target=pump, name="kortana-stdin", daemon=True).start()
    return lines


def _replace_undecodable(stream: TextIO) -> None:
    if isinstance(stream, io.TextIOWrapper) and not stream.closed:
        stream.reconfigure(errors="replace")


def _user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "friend"
