"""A turn shown on Discord (the `TurnDisplay` of the turn ladder): a streamed reply, the notices and the
engine footer as small lines under the final answer."""

from __future__ import annotations

import discord

from app.bot.streaming import ReplyStream


class ReplyDisplay:
    def __init__(self, stream: ReplyStream, *, empty_sentence: str) -> None:
        self._stream = stream
        self._empty_sentence = empty_sentence
        self._notices: list[str] = []
        self.final_buttons: discord.ui.View | None = None  # under the complete answer
        self.answered = False  # the complete answer was shown

    def add(self, chunk: str) -> None:
        self._stream.add(chunk)

    def restart(self, engine: str) -> None:
        self._stream.restart()

    def notice(self, text: str) -> None:
        self._notices.append(text)  # shown under the answer: a line of its own mid-stream would jump around

    async def show(self, text: str, answered_by: str | None) -> None:
        footer = [] if answered_by is None else [f"answered by {answered_by}"]
        self.answered = True
        await self._stream.finish(self._with_notices(text.strip() or "…", footer), buttons=self.final_buttons)

    async def fail(self, sentence: str) -> None:
        await self._stream.fail(self._with_notices(sentence))  # what was said of the message's files still holds

    async def nothing_to_answer(self) -> None:
        await self._stream.fail(self._with_notices(self._empty_sentence))

    def _with_notices(self, text: str, footer: list[str] | None = None) -> str:
        lines = [f"-# {line}" for line in (*self._notices, *(footer or ()))]
        return "\n".join([text, *lines])
