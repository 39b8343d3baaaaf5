"""The token budget: choose what of a conversation is sent to a model.

The budget covers the system prompt, the history and the newest user message, chat-template overhead
included. The system prompt and the newest message are always sent (a newest message that alone exceeds the
budget is cut, with a visible marker); the oldest turns go first; a window never starts with an assistant
message whose user message was dropped.

What is sent is defused: the control syntax of common chat templates (`<|im_start|>`, `</s>`, `[INST]`,
`<<SYS>>`, `<start_of_turn>` …) in a user's text, a display name or an answer gets a word joiner after its
first character, so no server parses it as a special token and nobody can forge a turn or a system prompt.
The model still reads the same characters; the store keeps the text as it was written. Token counts are of
the defused text, since that is what a model reads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.conversation.tokens import TokenCounter
from app.engines import ChatMessage
from app.storage import StoredMessage

# Chat templates wrap the conversation: measured on Llama 3, about 26 tokens of preamble, 5 per message,
# and 4 for the header of the answer the model is about to write.
PREAMBLE_TOKENS = 26
PER_MESSAGE_TOKENS = 5
ANSWER_HEADER_TOKENS = 4
CUT_MARKER = "\n[… cut: the message was longer than I can read at once]"

WORD_JOINER = "\u2060"  # invisible, and no tokenizer's special token contains it
_CHAT_SYNTAX = re.compile(
    r"<(?=[|｜])"  # <|im_start|>, <|eot_id|>, <|endoftext|> …; DeepSeek's <｜begin▁of▁sentence｜>
    r"|<(?=/?(?:s|unk|pad|bos|eos|mask|sop|eop|think|tool_call|tool_response)>)"
    r"|<(?=(?:start|end)_of_[a-z]+>)"  # Gemma's <start_of_turn>, <end_of_turn>
    r"|<(?=</?SYS>>)"  # Llama 2's <<SYS>>, <</SYS>>
    r"|\[(?=/?(?:INST|SYSTEM_PROMPT|AVAILABLE_TOOLS|TOOL_CALLS|TOOL_RESULTS|TOOL_CONTENT|THINK|[gs]?MASK)\])",
    re.IGNORECASE,
)


def defuse_chat_syntax(text: str) -> str:
    """The text with chat-template control syntax broken by a word joiner (idempotent)."""
    if "<" not in text and "[" not in text:  # most messages: a window defuses its whole history every turn
        return text
    return _CHAT_SYNTAX.sub(r"\g<0>" + WORD_JOINER, text)


@dataclass(frozen=True, slots=True)
class Text:
    """A piece of text with its token count, counted once."""

    content: str
    tokens: int

    @classmethod
    def counted(cls, content: str, counter: TokenCounter) -> Text:
        return cls(content, counter.count(content))


@dataclass(frozen=True, slots=True)
class Window:
    messages: list[ChatMessage]
    tokens: int
    newest_was_cut: bool


def fixed_cost(system: Text, newest: Text) -> int:
    """Tokens every window spends before any history."""
    return PREAMBLE_TOKENS + ANSWER_HEADER_TOKENS + system.tokens + newest.tokens + 2 * PER_MESSAGE_TOKENS


def history_allowance(system: Text, newest: Text, budget: int) -> int:
    """How many tokens of stored history (overhead included) fit beside the system prompt and newest message."""
    return max(0, budget - fixed_cost(system, newest))


def build_window(
    system: Text,
    history: Sequence[StoredMessage],
    newest: Text,
    budget: int,
    counter: TokenCounter,
) -> Window:
    """The messages to send: system prompt, the newest history that fits (oldest dropped first), newest message.

    `system` and `newest` come defused and counted; stored history is defused here (its stored token counts
    are of the defused text).
    """
    was_cut = False
    if fixed_cost(system, newest) > budget:
        newest = _cut_to_fit(newest, budget - fixed_cost(system, Text("", 0)), counter)
        was_cut = True

    room = history_allowance(system, newest, budget)
    kept: list[StoredMessage] = []
    for message in reversed(history):
        cost = message.token_count + PER_MESSAGE_TOKENS
        if cost > room:
            break
        room -= cost
        kept.append(message)
    kept.reverse()
    while kept and kept[0].role == "assistant":
        room += kept.pop(0).token_count + PER_MESSAGE_TOKENS

    chat: list[ChatMessage] = [{"role": "system", "content": system.content}]
    chat.extend({"role": m.role, "content": defuse_chat_syntax(m.content)} for m in kept)
    chat.append({"role": "user", "content": newest.content})
    return Window(chat, budget - room, was_cut)


def _cut_to_fit(newest: Text, room: int, counter: TokenCounter) -> Text:
    """The longest prefix of the message that, with the cut marker, fits in `room` tokens."""
    marker_tokens = counter.count(CUT_MARKER)
    low, high = 0, len(newest.content)
    while low < high:  # binary search on characters: counting is monotone enough for prefixes
        middle = (low + high + 1) // 2
        if counter.count(newest.content[:middle]) + marker_tokens <= room:
            low = middle
        else:
            high = middle - 1
    cut = newest.content[:low] + CUT_MARKER
    while low > 0 and counter.count(cut) > room:  # a tokenizer may merge differently at the cut
        low -= 1
        cut = newest.content[:low] + CUT_MARKER
    return Text(cut, counter.count(cut))

