"""The recall benchmark's stand-in for a model: scripted answers for the dataset's turns, an extractive summary for
everything else, and every request kept, so the benchmark can look at what reached "the model".

The summary stand-in is not a model and does not pretend to be one: it returns the user's own sentences of the
summary so far and of the transcript it was sent, oldest first (so a correction comes after what it corrects),
dropping the oldest sentences until the rest fits the requested tokens. It never invents, never paraphrases and
knows nothing of the planted facts; what it keeps is what a summary *could* carry, given its cap. The figures of
the summary modes are of this stand-in; the local model's own summary is measured on its own.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence

from app.conversation.tokens import TokenCounter
from app.engines import ChatMessage

SUMMARY_SO_FAR = re.compile(r"Summary so far:\s*\n(?P<text>.*?)\n\s*\n", re.DOTALL)
NOTHING_YET = "(nothing yet)"
USER_LINE = re.compile(r"^(?:\S*\[[^\]\n]*\]\S*\s+)?User:\s*(?P<text>.+)$", re.MULTILINE)
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def extractive_summary(request: Sequence[ChatMessage], max_tokens: int, counter: TokenCounter) -> str:
    """The stand-in's summary for a summary request: the user's sentences of the summary so far and of the new
    transcript, oldest first, the oldest dropped until the rest fits in `max_tokens`."""
    prompt = request[-1]["content"]
    so_far = SUMMARY_SO_FAR.search(prompt)
    previous = so_far["text"].strip() if so_far else ""
    sentences = sentences_of(previous) if previous and previous != NOTHING_YET else []
    for line in USER_LINE.finditer(prompt):
        sentences += sentences_of(line["text"])
    while sentences and counter.count(" ".join(sentences)) > max_tokens:
        sentences.pop(0)
    return " ".join(sentences)


def sentences_of(text: str) -> list[str]:
    return [sentence for sentence in SENTENCE_END.split(text.strip()) if sentence]


class ScriptedEngine:
    """Answers each user text of the script with its scripted assistant turn, and a summary job's request with
    `extractive_summary`; keeps every request in `requests`, and in `turn_requests` or `summary_requests`.

    `hold_summaries()` makes summary requests wait, once received, until `release_summaries()` (a reset can
    then happen while a summary job is running); `summary_held` is set when one is waiting."""

    name = "scripted"

    def __init__(self, script: Mapping[str, str], counter: TokenCounter, context_window: int = 8192) -> None:
        self.context_window = context_window
        self.requests: list[list[ChatMessage]] = []
        self.turn_requests: list[list[ChatMessage]] = []
        self.summary_requests: list[list[ChatMessage]] = []
        self.summaries_written = 0
        self.summary_held = asyncio.Event()
        self._script = script
        self._counter = counter
        self._release: asyncio.Event | None = None

    def forget_requests(self) -> None:
        """Keep no requests so far (a long run would keep them all alive)."""
        self.requests.clear()
        self.turn_requests.clear()
        self.summary_requests.clear()

    def hold_summaries(self) -> None:
        self._release = asyncio.Event()
        self.summary_held.clear()

    def release_summaries(self) -> None:
        if self._release is not None:
            self._release.set()
            self._release = None

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        request = list(messages)
        self.requests.append(request)
        newest = request[-1]["content"]
        if newest in self._script:
            self.turn_requests.append(request)
            yield self._script[newest]
            return
        if not SUMMARY_SO_FAR.search(newest):  # the script and the stored history went apart: stop, loudly
            raise LookupError(f"neither a scripted turn nor a summary request: {newest[:60]!r}")
        self.summary_requests.append(request)
        if self._release is not None:
            release = self._release
            self.summary_held.set()
            await release.wait()
        summary = extractive_summary(request, max_tokens, self._counter)
        self.summaries_written += 1
        yield summary

    async def aclose(self) -> None:
        self.release_summaries()
