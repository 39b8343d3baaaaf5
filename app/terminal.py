"""`kortana chat`: the conversation service in a terminal, one line per turn, scriptable through stdin."""

from __future__ import annotations

import asyncio
import getpass
import io
import logging
import sys
import threading
from typing import TextIO

from app.conversation.events import NO_MEMORY
from app.conversation.service import ConversationService
from app.conversation.status import format_status
from app.conversation.turn_display import show_turn
from app.storage import ConversationKey, StorageUnavailable

log = logging.getLogger(__name__)
TERMINAL_KEY = ConversationKey(user_id=0, scope="terminal")
EMPTY_LINE = "Say something and I'll answer 🙂"
HELP = "Type a message and press Enter. Commands: /reset forgets our conversation, /ping shows health, /quit ends."


async def chat(service: ConversationService, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
    # A byte the locale cannot decode (or a character the terminal cannot show) becomes U+FFFD / "?", never an
    # exception: a strict decoder killed the reader thread and the chat hung for good.
    _replace_undecodable(stdin)
    _replace_undecodable(out)
    author = _user_name()
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
        if command == "/reset":
            await _reset(service, out)
        elif command == "/ping":
            out.write(format_status(await service.status()) + "\n")
        elif command == "/help":
            out.write(HELP + "\n")
        else:
            await _turn(service, author, line, out)
        out.flush()
    out.write("Goodbye! 👋\n")
    out.flush()


async def _turn(service: ConversationService, author: str, text: str, out: TextIO) -> None:
    out.write("Kor'tana: ")
    events = service.respond(TERMINAL_KEY, author, text)
    await show_turn(events, TerminalLine(out), log_id=TERMINAL_KEY.log_id, brain_name=service.brain_name)


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
    try:
        forgotten = await service.reset(TERMINAL_KEY)
    except StorageUnavailable as error:
        log.error("Conversation %s: a reset failed, the database is unavailable (%s)", TERMINAL_KEY.log_id, error.cause)
        out.write(f"{NO_MEMORY}\n")
        return
    out.write(f"Forgot {forgotten} message{'s' if forgotten != 1 else ''}. Fresh start!\n")


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
