"""The turn ladder on its own: what each event and each failure of a turn becomes on a display."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.conversation import turn_display
from app.conversation.events import (
    NO_MEMORY,
    SORRY,
    EmptyMessage,
    FinalReply,
    Notice,
    TextChunk,
)
from app.conversation.turn_display import show_turn
from app.engines import EngineStarted
from app.storage import StorageUnavailable


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []

    def add(self, chunk: str) -> None:
        self.seen.append(("add", chunk))

    def restart(self, engine: str) -> None:
        self.seen.append(("restart", engine))

    def notice(self, text: str) -> None:
        self.seen.append(("notice", text))

    async def show(self, text: str, answered_by: str | None) -> None:
        self.seen.append(("show", text, str(answered_by)))

    async def fail(self, sentence: str) -> None:
        self.seen.append(("fail", sentence))

    async def nothing_to_answer(self) -> None:
        self.seen.append(("empty",))


def turn(*events, then: BaseException | None = None, closed: list[bool] | None = None):
    async def events_then_error():
        try:
            for event in events:
                yield event
            if then is not None:
                raise then
        finally:
            if closed is not None:
                closed.append(True)

    return events_then_error()


async def show(events, **options) -> Recorder:
    display = Recorder()
    await show_turn(events, display, log_id="c0ffee", brain_name="brain", **options)
    return display


async def test_a_takeover_and_a_notice_reach_the_display_and_a_fallback_engine_is_named() -> None:
    display = await show(
        turn(
            EngineStarted("brain", False), TextChunk("hal"), EngineStarted("huggingface", replaces_partial=True),
            Notice("cut"), TextChunk("whole"), FinalReply("whole", "huggingface", 0.1),
        )
    )  # fmt: skip
    assert display.seen == [
        ("add", "hal"), ("restart", "huggingface"), ("notice", "cut"), ("add", "whole"),
        ("show", "whole", "huggingface"),
    ]  # fmt: skip


async def test_the_brain_is_not_named_and_the_footer_can_be_turned_off() -> None:
    assert (await show(turn(FinalReply("hi", "brain", 0.1)))).seen == [("show", "hi", "None")]
    assert (await show(turn(FinalReply("hi", "echo", 0.1)), engine_footer=False)).seen == [("show", "hi", "None")]


async def test_how_long_a_model_thought_is_a_notice_before_the_answer_only_when_the_reply_says_it() -> None:
    thought = await show(turn(TextChunk("hi"), FinalReply("hi", "brain", 5.0, thought_s=4.4)))
    assert thought.seen == [("add", "hi"), ("notice", "💭 thought for 4 s"), ("show", "hi", "None")]
    assert (await show(turn(FinalReply("hi", "brain", 0.1, thought_s=0.3)))).seen[0] == (
        "notice", "💭 thought for under 1 s",
    )
    assert (await show(turn(FinalReply("hi", "brain", 5.0)))).seen == [("show", "hi", "None")]


@pytest.mark.parametrize(
    ("error", "seen"),
    [
        (EmptyMessage("nothing"), [("empty",)]),
        (StorageUnavailable("database is locked"), [("fail", NO_MEMORY)]),
        (RuntimeError("boom"), [("fail", SORRY)]),
    ],
)
async def test_a_failure_before_the_answer_gets_its_sentence_and_one_log_line(error, seen, caplog) -> None:
    closed: list[bool] = []
    display = await show(turn(TextChunk("par"), then=error, closed=closed))
    assert display.seen == [("add", "par"), *seen] and closed == [True]
    lines = [r for r in caplog.records if r.name == turn_display.log.name and r.levelno >= logging.ERROR]
    assert len(lines) == (0 if isinstance(error, EmptyMessage) else 1)
    assert all("c0ffee" in r.getMessage() and str(error) in r.getMessage() for r in lines)


async def test_an_error_after_the_answer_was_shown_is_only_logged(caplog) -> None:
    display = await show(turn(FinalReply("done", "brain", 0.1), then=StorageUnavailable("database or disk is full")))
    assert display.seen == [("show", "done", "None")]
    [line] = [r.getMessage() for r in caplog.records if r.name == turn_display.log.name]
    assert "after its answer was shown" in line and "database or disk is full" in line


async def test_a_cut_turn_says_its_sentence_unless_the_answer_was_shown() -> None:
    started = asyncio.Event()

    async def hanging(*before):
        for event in before:
            yield event
        started.set()
        await asyncio.Event().wait()
        yield TextChunk("never")

    cases = [
        ((), [("fail", "cut!")]),
        ((TextChunk("par"),), [("add", "par"), ("fail", "cut!")]),
        ((FinalReply("done", "brain", 0.1),), [("show", "done", "None")]),  # the answer stands
    ]
    for before, expected in cases:
        display = Recorder()
        started.clear()
        task = asyncio.create_task(
            show_turn(hanging(*before), display, log_id="c0ffee", brain_name="brain", cut_sentence="cut!")
        )
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert display.seen == expected

    display = Recorder()
    task = asyncio.create_task(show_turn(hanging(), display, log_id="c0ffee", brain_name="brain"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert display.seen == [], "no cut sentence (the terminal): nothing is said"
