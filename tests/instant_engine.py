"""An engine that answers at once and remembers what it was sent: a stand-in for a model, not for our code."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from app.engines import ChatMessage


class InstantEngine:
    def __init__(self, name: str = "instant", context_window: int = 8192, chunks: int = 1, delay_s: float = 0) -> None:
        self.name = name
        self.context_window = context_window
        self.chunks = chunks
        self.delay_s = delay_s  # "thinking" time before the answer, so concurrent turns really overlap
        self.requests: list[list[ChatMessage]] = []

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        self.requests.append(list(messages))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        answer = f"reply to: {messages[-1]['content']}"
        step = max(1, len(answer) // self.chunks)
        for start in range(0, len(answer), step):
            yield answer[start : start + step]

    async def aclose(self) -> None:
        pass
