"""One turn shown to a user: what each event and each failure of `ConversationService.respond` becomes.

Every front end walks the same ladder; only how a thing looks is theirs (a `TurnDisplay`):
- text chunks stream in; an engine that takes over mid-answer replaces what was shown;
- notices reach the display as they come; the final reply is shown once, with the engine that answered when it
  is not the brain (and the front end shows that), and how long a reasoning model thought as a notice of its own
  when the reply says it (SHOW_THINKING_TIME): shown, never stored;
- an empty message gets the front end's own sentence; an unreachable database gets NO_MEMORY; any other error
  gets SORRY; an error after the answer was shown is only logged (the answer stands);
- a cut turn (cancelled, e.g. by a shutdown) says `cut_sentence` if it has one and nothing was shown yet;
- an answer its asker stopped is shown as it was, with STOPPED_NOTE under it; a turn that ended without an
  answer and by no fault (stopped before any text, a regenerated turn erased or no longer the newest) says its
  own sentence.

Log lines name the conversation by its log id and the error's own words, never the message text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Protocol

from app.conversation.events import (
    EmptyMessage,
    FinalReply,
    Notice,
    TextChunk,
    TurnEnded,
    TurnEvent,
    failure_sentence,
)
from app.engines import EngineStarted
from app.safe_text import error_cause
from app.storage import StorageUnavailable

log = logging.getLogger(__name__)

STOPPED_NOTE = "⏹ stopped"


class TurnDisplay(Protocol):
    """Where one turn is shown: a Discord reply, a terminal line."""

    def add(self, chunk: str) -> None:
        """More text of the answer."""
        ...

    def restart(self, engine: str) -> None:
        """`engine` takes over after another failed mid-answer: the text shown so far is to be replaced."""
        ...

    def notice(self, text: str) -> None:
        """Something the user should know about their turn (e.g. their message was cut to fit)."""
        ...

    async def show(self, text: str, answered_by: str | None) -> None:
        """The complete answer; `answered_by` names the engine when the front end should say which one it was."""
        ...

    async def fail(self, sentence: str) -> None:
        """The turn ended without an answer: say why, in this short sentence."""
        ...

    async def nothing_to_answer(self) -> None:
        """The message was empty once cleaned (whitespace, zero-width characters, a bare mention)."""
        ...


def thinking_note(seconds: float) -> str:
    """The line that says how long a reasoning model thought."""
    return "💭 thought for under 1 s" if seconds < 1 else f"💭 thought for {round(seconds)} s"


async def show_turn(
    events: AsyncGenerator[TurnEvent, None],
    display: TurnDisplay,
    *,
    log_id: str,
    brain_name: str | None,
    engine_footer: bool = True,
    cut_sentence: str | None = None,
) -> bool:
    """Consume one turn's `events` (closed at the end, whatever happens) and show them on `display`; returns
    False when the turn failed (no answer, a sentence saying so instead)."""
    shown = False
    failed = False
    try:
        async with aclosing(events):
            async for event in events:
                if isinstance(event, TextChunk):
                    display.add(event.text)
                elif isinstance(event, EngineStarted) and event.replaces_partial:
                    display.restart(event.engine)
                elif isinstance(event, Notice):
                    display.notice(event.text)
                elif isinstance(event, FinalReply):
                    shown = True
                    answered_by = event.engine if engine_footer and event.engine != brain_name else None
                    if event.thought_s is not None:
                        display.notice(thinking_note(event.thought_s))
                    if event.stopped:
                        display.notice(STOPPED_NOTE)
                    await display.show(event.text, answered_by)
    except asyncio.CancelledError:
        if not shown and cut_sentence is not None:  # end visibly, not with a partial answer left for good
            try:
                await display.fail(cut_sentence)
            except Exception as error:  # noqa: BLE001 - cut (a shutdown): one log line, never a traceback
                log.warning("Could not tell a user that their turn was cut: %s", error_cause(error))
        raise
    except EmptyMessage:
        await display.nothing_to_answer()
    except TurnEnded as ended:
        await display.fail(ended.sentence)
    except Exception as error:
        if shown:
            log.error("Turn failed in conversation %s after its answer was shown: %s", log_id, error_cause(error))
        else:
            # A database's short cause says it all (its driver error may quote SQL); anything else is a bug.
            trace = None if isinstance(error, StorageUnavailable) else error
            log.error("Turn failed in conversation %s: %s", log_id, error_cause(error), exc_info=trace)
            failed = True
            await display.fail(failure_sentence(error))
    return not failed
