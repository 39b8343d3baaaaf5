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
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from app.conversation.tokens import TokenCounter
from app.conversation.turn_images import as_sent
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
    are of the defused text). This is the context without memory (`app.conversation.context`).
    """
    newest, was_cut = fit_newest(system, newest, budget, counter)
    room = history_allowance(system, newest, budget)
    kept, used = recent_window(history, room)
    return Window(chat_messages(system.content, kept, newest), budget - room + used, was_cut)


def fit_newest(system: Text, newest: Text, budget: int, counter: TokenCounter) -> tuple[Text, bool]:
    """The newest message as it is sent, and whether it was cut: whole, or, when alone it does not fit beside
    the system prompt, its longest prefix that fits with the cut marker."""
    if fixed_cost(system, newest) <= budget:
        return newest, False
    extra = max(0, newest.tokens - counter.count(newest.content))  # what its text does not count: its images
    cut = _cut_to_fit(newest, budget - fixed_cost(system, Text("", extra)), counter)
    return Text(cut.content, cut.tokens + extra), True


def turn_of(message: StoredMessage) -> int | None:
    """The turn a stored message belongs to (a question is its own turn); None for a message never stored."""
    return message.turn if message.turn is not None else message.id


def recent_window(
    history: Sequence[StoredMessage], room: int, skip_turns: Collection[int] = ()
) -> tuple[list[StoredMessage], int]:
    """The newest messages of `history` that fit in `room` tokens (each its count and PER_MESSAGE_TOKENS),
    oldest first, and the tokens they take. The window stops at the first message that does not fit, leaves
    out the messages of `skip_turns` (sent elsewhere), and never starts with an assistant message: its
    question did not fit."""
    kept: list[StoredMessage] = []
    used = 0
    for message in reversed(history):
        if skip_turns and turn_of(message) in skip_turns:
            continue
        cost = message.token_count + PER_MESSAGE_TOKENS
        if used + cost > room:
            break
        used += cost
        kept.append(message)
    kept.reverse()
    while kept and kept[0].role == "assistant":
        used -= kept.pop(0).token_count + PER_MESSAGE_TOKENS
    return kept, used


def chat_messages(system_content: str, window: Sequence[StoredMessage], newest: Text) -> list[ChatMessage]:
    """The chat as sent: one system message, the window defused, the newest message."""
    chat: list[ChatMessage] = [{"role": "system", "content": system_content}]
    # An older turn's images are sent as notes (app.conversation.turn_images); the newest's are added by the service.
    chat.extend({"role": m.role, "content": defuse_chat_syntax(as_sent(m))} for m in window)
    chat.append({"role": "user", "content": newest.content})
    return chat


def _cut_to_fit(newest: Text, room: int, counter: TokenCounter) -> Text:
    """The longest prefix of the message that, with the cut marker, fits in `room` tokens."""
    cut = cut_to_fit(newest.content, room, counter)
    return Text(cut, counter.count(cut))


def cut_to_fit(text: str, room: int, counter: TokenCounter, measure: Callable[[str], str] = str) -> str:
    """The longest prefix of `text` that, with the cut marker, counts at most `room` tokens once `measure`d (the
    text as it will be sent: e.g. defused). A code block the cut leaves open is closed before the marker, so the
    marker reads as ours, not as the end of the file the block quotes."""
    marker_tokens = counter.count(CUT_MARKER)

    def cut_at(end: int) -> str:
        return text[:end] + closing_fence(text[:end]) + CUT_MARKER

    low, high = 0, len(text)
    while low < high:  # binary search on characters: counting is monotone enough for prefixes
        middle = (low + high + 1) // 2
        if counter.count(measure(text[:middle] + closing_fence(text[:middle]))) + marker_tokens <= room:
            low = middle
        else:
            high = middle - 1
    cut = cut_at(low)
    while low > 0 and counter.count(measure(cut)) > room:  # a tokenizer may merge differently at the cut
        low -= 1
        cut = cut_at(low)
    return cut


_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def closing_fence(text: str) -> str:
    """What closes the Markdown code block `text` leaves open ("\n```", say), or "" when none is open."""
    if "```" not in text and "~~~" not in text:
        return ""
    opened: str | None = None
    for line in text.split("\n"):
        fence = _FENCE_LINE.match(line)
        if fence is None:
            continue
        marks, rest = fence.groups()
        if opened is None:
            if not (marks[0] == "`" and "`" in rest):  # a backtick fence's info string holds no backtick
                opened = marks
        elif marks[0] == opened[0] and len(marks) >= len(opened) and not rest.strip():
            opened = None
    if opened is None:
        return ""
    return opened if text.endswith("\n") else "\n" + opened
