"""Log lines of a turn carry its id and shard, in text and in JSON; lines outside a turn carry none."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from app.conversation.log_context import log_handler, turn_logging


def logger_to(out: io.StringIO, log_format: str) -> logging.Logger:
    logger = logging.getLogger(f"test.log_context.{log_format}")
    logger.handlers = [log_handler(log_format, out)]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


async def test_a_turn_s_lines_and_its_tasks_lines_carry_its_id_and_shard_in_json() -> None:
    out = io.StringIO()
    log = logger_to(out, "json")
    log.info("before")
    with turn_logging(shard=3) as turn:
        log.warning("inside %s", "the turn")
        await asyncio.create_task(asyncio.to_thread(lambda: None))
        await asyncio.create_task(_log_later(log))  # a task the turn started
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("after")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["message"], line["turn"], line["shard"]) for line in lines] == [
        ("before", None, None), ("inside the turn", turn.turn, 3), ("from a task", turn.turn, 3), ("after", None, None),
    ]  # fmt: skip
    assert lines[1]["level"] == "WARNING" and lines[1]["logger"] == "test.log_context.json"
    assert "ValueError: boom" in lines[3]["exc"]


async def _log_later(log: logging.Logger) -> None:
    await asyncio.sleep(0)
    log.info("from a task")


def test_text_lines_show_the_turn_only_inside_one() -> None:
    out = io.StringIO()
    log = logger_to(out, "text")
    with turn_logging() as turn:
        log.info("in the terminal's turn")
    log.info("outside")
    first, second = out.getvalue().splitlines()
    assert first.endswith(f"INFO test.log_context.text [turn {turn.turn}]: in the terminal's turn")
    assert second.endswith("INFO test.log_context.text: outside")
