"""The stand-in for a model, for the benchmarks and the tests: what they measure or check is everything around it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from app.engines import ChatMessage


class InstantEngine:
    """Answers at once, or after `delay_s` (a model's thinking time, so that concurrent turns really overlap), in
    `chunks` pieces. The answer is `answer`, or else "reply to: " and the last message; every request it is sent
    is kept in `requests` unless `keep_requests` is off (a long benchmark would keep them all alive)."""

    def __init__(
        self,
        name: str = "instant",
        context_window: int = 8192,
        *,
        chunks: int = 1,
        delay_s: float = 0.0,
        answer: str | None = None,
        keep_requests: bool = True,
    ) -> None:
        self.name = name
        self.context_window = context_window
        self.chunks = chunks
        self.delay_s = delay_s
        self.answer = answer
        self.keep_requests = keep_requests
        self.requests: list[list[ChatMessage]] = []

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        if self.keep_requests:
            self.requests.append(list(messages))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        answer = self.answer if self.answer is not None else f"reply to: {messages[-1]['content']}"
        step = max(1, len(answer) // self.chunks)
        for start in range(0, len(answer), step):
            yield answer[start : start + step]

    async def aclose(self) -> None:
        pass
