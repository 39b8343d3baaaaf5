"""What a turn sends to a model: the system prompt, memory of older turns, the recent window, the newest message.

The budget rules, for a budget B (each engine's own: the chain builds a context per engine):

1. The system prompt and the newest message are always sent; a newest message that alone does not fit beside
   the system prompt is cut, with a visible marker (`window.fit_newest`).
2. R is what remains of B after them and the chat template's overhead (`window.history_allowance`).
3. Memory (the conversation's summary first, then recalled older turns) takes at most `share * R` tokens,
   computed per call: a smaller engine budget gets a smaller memory block. The part `R - share * R` belongs to
   the recent window alone; recall never takes it, so recall never pushes out the newest turns.
4. Recalled turns are taken best first while they fit: a user message with its answer when the pair fits,
   else the message alone. A found turn that is already in that part of the window is not recalled; a
   recalled turn is left out of the window. They are shown oldest first, each line dated and named
   ("[2026-09-03] Sam: …", "[2026-09-03] you: …") under a header that says they are earlier excerpts.
5. The recent window fills everything memory did not use, newest first, without the recalled turns, never
   starting with an answer whose question was dropped (`window.recent_window`).
6. Memory goes into the one system message, after the system prompt (several chat templates reject a second
   system message). Everything sent is defused (`window.defuse_chat_syntax`).
7. The total, counted as it is sent (the chat template's preamble and per-message overhead, and every
   content by the counter: the system message with its memory block counted as one text, since tokenizers
   merge across joins), never exceeds B.

`recall_horizon` says how far back the search for recalled turns must look: to before the part of the window
that memory can never take, at the service's budget (a smaller engine's budget protects a newer part still).

Without memory, or with an empty one, the context is exactly `window.build_window`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.conversation.tokens import TokenCounter
from app.conversation.turn_images import as_sent
from app.conversation.window import (
    PER_MESSAGE_TOKENS,
    Text,
    chat_messages,
    defuse_chat_syntax,
    fit_newest,
    history_allowance,
    recent_window,
    turn_of,
)
from app.engines import ChatMessage
from app.storage import FoundMessage, StoredMessage, Summary

MEMORY_HEADER = "Excerpts from earlier in this conversation, dated, oldest first (use them when they help):"
SUMMARY_LABEL = "Summary of what was said before: "
ASSISTANT_LABEL = "you"  # the model reads its own earlier answers as its own


@dataclass(frozen=True, slots=True)
class Memory:
    """What may be sent of the conversation beyond the recent window: its summary, the older messages a search
    found (best first), the share of what remains of the budget they may take, and the name the user's lines
    are shown with."""

    summary: Summary | None
    found: Sequence[FoundMessage]
    share: float
    user_name: str = "user"


@dataclass(frozen=True, slots=True)
class Context:
    messages: list[ChatMessage]
    tokens: int  # of everything sent, chat template included
    newest_was_cut: bool
    recalled: int  # older turns in the memory block
    memory_tokens: int  # what the memory block adds to the system message


def memory_cap(remaining: int, share: float) -> int:
    """The most tokens memory may take of `remaining` (what the system prompt and newest message leave)."""
    return int(share * remaining)


def recall_horizon(history: Sequence[StoredMessage], allowance: int, share: float) -> int | None:
    """The turn before which the search for recalled turns looks: the oldest turn of the newest messages that
    fit in the part of `allowance` memory can never take (the newest message's turn when not even it fits).
    None when the history is empty, or is of messages never stored."""
    if not history:
        return None
    room = allowance - memory_cap(allowance, share)
    horizon = turn_of(history[-1])
    for message in reversed(history):
        room -= message.token_count + PER_MESSAGE_TOKENS
        if room < 0:
            break
        horizon = turn_of(message)
    return horizon


def build_context(
    system: Text,
    history: Sequence[StoredMessage],
    newest: Text,
    budget: int,
    counter: TokenCounter,
    memory: Memory | None = None,
) -> Context:
    """The messages to send within `budget` (the rules are the module's): `system` and `newest` come defused and
    counted; `history` is the newest stored history, oldest first (its token counts are of defused text)."""
    newest, was_cut = fit_newest(system, newest, budget, counter)
    remaining = history_allowance(system, newest, budget)
    block = _memory_block(system, history, remaining, counter, memory)
    window, window_tokens = recent_window(history, remaining - block.tokens, block.turns)
    return Context(
        chat_messages(block.system_content, window, newest),
        budget - remaining + block.tokens + window_tokens,
        was_cut,
        recalled=len(block.turns),
        memory_tokens=block.tokens,
    )


@dataclass(frozen=True, slots=True)
class _Block:
    system_content: str  # the system prompt with the memory block
    tokens: int  # what the block adds to the system prompt's count
    turns: frozenset[int]  # the recalled turns


def _memory_block(
    system: Text, history: Sequence[StoredMessage], remaining: int, counter: TokenCounter, memory: Memory | None
) -> _Block:
    nothing = _Block(system.content, 0, frozenset())
    if memory is None or (memory.summary is None and not memory.found):
        return nothing
    cap = memory_cap(remaining, memory.share)
    protected, _ = recent_window(history, remaining - cap)
    in_window = {turn_of(message) for message in protected}
    header_cost = counter.count(f"{system.content}\n\n{MEMORY_HEADER}") - system.tokens

    # Chosen by the sum of each line's count (cheap); the block as sent is counted once at the end.
    estimate = header_cost
    summary = None
    if memory.summary is not None:
        line = SUMMARY_LABEL + " ".join(defuse_chat_syntax(memory.summary.content).split())
        cost = counter.count("\n" + line)
        if estimate + cost <= cap:
            summary, estimate = line, estimate + cost
    chosen: list[tuple[int, list[str]]] = []  # (turn, its lines)
    for found in memory.found:
        turn = turn_of(found.message)
        if turn is None or turn in in_window or any(turn == earlier for earlier, _ in chosen):
            continue
        fitting = _fitting_lines(found, cap - estimate, memory.user_name, counter)
        if fitting is not None:
            lines, cost = fitting
            chosen.append((turn, lines))
            estimate += cost
    if summary is None and not chosen:
        return nothing

    while True:  # a tokenizer may count the joined block above the sum of its lines: drop the worst turn
        content = _render(system.content, summary, [lines for _, lines in sorted(chosen, key=lambda c: c[0])])
        tokens = counter.count(content) - system.tokens
        if tokens <= cap or not (chosen or summary):
            break
        if chosen:
            chosen.pop()
        else:
            summary = None
    if summary is None and not chosen:
        return nothing
    return _Block(content, tokens, frozenset(turn for turn, _ in chosen))


def _fitting_lines(
    found: FoundMessage, room: int, user_name: str, counter: TokenCounter
) -> tuple[list[str], int] | None:
    """The lines of a found turn that fit in `room` and their cost: the message with its answer when both fit,
    else the message alone; None when not even the message fits."""
    first = _line(found.message, user_name)
    first_cost = counter.count("\n" + first)
    if first_cost > room:
        return None
    if found.answer is not None and found.message.role == "user":
        second = _line(found.answer, user_name)
        both_cost = first_cost + counter.count("\n" + second)
        if both_cost <= room:
            return [first, second], both_cost
    return [first], first_cost


def _line(message: StoredMessage, user_name: str) -> str:
    speaker = ASSISTANT_LABEL if message.role == "assistant" else defuse_chat_syntax(user_name)
    dated = f"[{message.created_at.date().isoformat()}] " if message.created_at is not None else ""
    # One line each, whatever the message held: its own line breaks must not pass for lines of the block.
    return f"{dated}{speaker}: {' '.join(defuse_chat_syntax(as_sent(message)).split())}"


def _render(system_content: str, summary: str | None, turns: list[list[str]]) -> str:
    lines = [MEMORY_HEADER]
    if summary is not None:
        lines.append(summary)
    for turn_lines in turns:
        lines.extend(turn_lines)
    return system_content + "\n\n" + "\n".join(lines)
