"""`kortana chat`: the conversation service in a terminal, one line per turn, scriptable through stdin."""

from __future__ import annotations

import asyncio
import getpass
import io
import logging
import sys
import threading
from contextlib import aclosing
from typing import TextIO

from app.conversation.events import (
    NO_MEMORY,
    SORRY,
    ConversationKey,
    EmptyMessage,
    FinalReply,
    Notice,
    StorageUnavailable,
    TextChunk,
)
from app.conversation.service import ConversationService
from app.conversation.status import format_status
from app.engines import EngineStarted

log = logging.getLogger(__name__)
TERMINAL_KEY = ConversationKey(user_id=0, scope="terminal")
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
    try:
        async with aclosing(service.respond(TERMINAL_KEY, author, text)) as events:
            out.write("Kor'tana: ")
            async for event in events:
                if isinstance(event, EngineStarted) and event.replaces_partial:
                    out.write(f"\n[{event.engine} takes over]\nKor'tana: ")
                elif isinstance(event, TextChunk):
                    out.write(event.text)
                    out.flush()
                elif isinstance(event, Notice):
                    out.write(f"\n[{event.text}]\nKor'tana: ")
                elif isinstance(event, FinalReply):
                    if event.engine != service.brain_name:
                        out.write(f"  [answered by {event.engine}]")
                    out.write("\n")
    except EmptyMessage:
        out.write("Say something and I'll answer 🙂\n")
    except StorageUnavailable as error:
        _log_unavailable("a turn", error)
        out.write(f"\n{NO_MEMORY}\n")
    except Exception:
        log.exception("Conversation %s: a turn failed", TERMINAL_KEY.log_id)
        out.write(f"\n{SORRY}\n")


async def _reset(service: ConversationService, out: TextIO) -> None:
    try:
        forgotten = await service.reset(TERMINAL_KEY)
    except StorageUnavailable as error:
        _log_unavailable("a reset", error)
        out.write(f"{NO_MEMORY}\n")
        return
    out.write(f"Forgot {forgotten} message{'s' if forgotten != 1 else ''}. Fresh start!\n")


def _log_unavailable(what: str, error: StorageUnavailable) -> None:
    log.error("Conversation %s: %s failed, the database is unavailable (%s)", TERMINAL_KEY.log_id, what, error.cause)


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
