"""The last resort: an answer that needs nothing outside the process and never fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from app.engines.contract import ECHO, ChatMessage

_QUOTE_LIMIT = 80
_TROUBLE = "I'm having trouble reaching my thoughts right now 💭"


class EchoEngine:
    name = ECHO
    context_window = 1_000_000  # it reads only the newest message, so any window fits

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        yield echo_reply(messages)

    async def aclose(self) -> None:
        """Nothing to close."""


def echo_reply(messages: Sequence[ChatMessage]) -> str:
    said = next((message["content"] for message in reversed(messages) if message["role"] == "user"), "")
    said = " ".join(said.split())
    if not said:
        return f"{_TROUBLE} Try me again in a moment!"
    if len(said) > _QUOTE_LIMIT:
        said = said[: _QUOTE_LIMIT - 1].rstrip() + "…"
    return f"{_TROUBLE} — you said: “{said}”. Try me again in a moment!"
