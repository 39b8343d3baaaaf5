"""Counting tokens: exact with a configured tokenizer, otherwise an estimate that over-counts natural text.

The estimate, per piece of text (bytes per token measured with the Llama 3 tokenizer):
- a run of ASCII letters: one token per started 3 characters (English averages 4.9 bytes a token);
- a run mixing letters and digits (ids, hex, base64): one token per started 1.4 characters;
- a run of digits: one token per started 3 digits (Llama 3 splits numbers in threes);
- any other ASCII character (punctuation, symbols): one token each;
- whitespace: a single space before a word is free (it joins the word); a longer run of spaces costs one token
  per started 4 spaces; every line break and every tab costs one (a BPE without whitespace merges, such as
  one trained on prose, spends a token on each, and SentencePiece vocabularies spell newlines as bytes);
- a non-ASCII character (a non-ASCII space included): half its UTF-8 bytes plus one (CJK over-counts a lot,
  emoji a little);
and never more tokens than the text has UTF-8 bytes.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

_PIECES = re.compile(r"[A-Za-z]+(?:[0-9]+[A-Za-z0-9]*)?|[0-9]+(?:[A-Za-z]+[A-Za-z0-9]*)?| +|[^ A-Za-z0-9]")
SPACES_PER_TOKEN = 4


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class EstimatedTokens:
    name = "estimate"

    def count(self, text: str) -> int:
        tokens = 0
        for match in _PIECES.finditer(text):
            piece = match[0]
            first = piece[0]
            if first == " ":
                spaces = len(piece)
                if match.end() < len(text) and not text[match.end()].isspace():
                    spaces -= 1  # the space that starts the next word is part of its token
                tokens += math.ceil(spaces / SPACES_PER_TOKEN)
            elif first.isascii() and first.isalnum():
                if piece.isalpha() or piece.isdigit():
                    tokens += math.ceil(len(piece) / 3)
                else:
                    tokens += math.ceil(len(piece) / 1.4)
            elif first.isascii():
                tokens += 1
            else:
                tokens += len(first.encode()) // 2 + 1
        return min(tokens, len(text.encode()))


class NeverFailingCounter:
    """A counter whose failure falls back to the estimate: a tokenizer's bug must not end a turn."""

    def __init__(self, counter: TokenCounter) -> None:
        self.name = counter.name
        self._counter = counter
        self._estimate = EstimatedTokens()
        self._failed_before = False

    def count(self, text: str) -> int:
        try:
            return self._counter.count(text)
        except Exception as error:
            # Once at WARNING: a broken tokenizer fails every count, several per turn.
            level = logging.DEBUG if self._failed_before else logging.WARNING
            self._failed_before = True
            log.log(level, "Token counter %s failed (%s); estimating instead", self.name, type(error).__name__)
            return self._estimate.count(text)


class TokenizerTokens:
    """Exact counts from a `tokenizer.json` (a file path, or a hub repo id fetched once and cached)."""

    def __init__(self, source: str) -> None:
        self.name = source
        self._tokenizer = _load_tokenizer(source)

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


@functools.lru_cache(maxsize=4)
def _load_tokenizer(source: str):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    return Tokenizer.from_pretrained(source)


class EngineTokens:
    """Exact counts from an engine's own tokenizer (the local model's)."""

    def __init__(self, name: str, count: Callable[[str], int]) -> None:
        self.name = name
        self.count = count  # type: ignore[method-assign]


def token_counter(tokenizer: str | None) -> TokenCounter:
    return TokenizerTokens(tokenizer) if tokenizer else EstimatedTokens()
