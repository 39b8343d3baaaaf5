"""Counting tokens: exact with a configured tokenizer, otherwise an estimate that over-counts natural text.

The estimate, per piece of text (bytes per token measured with the Llama 3 tokenizer):
- a run of ASCII letters: one token per started 3 characters (English averages 4.9 bytes a token);
- a run mixing letters and digits (ids, hex, base64): one token per started 1.4 characters;
- a run of digits: one token per started 3 digits (Llama 3 splits numbers in threes);
- any other ASCII character (punctuation, symbols): one token each; whitespace: free (it joins a word);
- a non-ASCII character: half its UTF-8 bytes plus one (CJK over-counts a lot, emoji a little);
and never more tokens than the text has UTF-8 bytes.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

_PIECES = re.compile(r"[A-Za-z]+(?:[0-9]+[A-Za-z0-9]*)?|[0-9]+(?:[A-Za-z]+[A-Za-z0-9]*)?|[^\sA-Za-z0-9]")


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class EstimatedTokens:
    name = "estimate"

    def count(self, text: str) -> int:
        tokens = 0
        for piece in _PIECES.findall(text):
            first = piece[0]
            if first.isascii() and first.isalnum():
                if piece.isalpha():
                    tokens += math.ceil(len(piece) / 3)
                elif piece.isdigit():
                    tokens += math.ceil(len(piece) / 3)
                else:
                    tokens += math.ceil(len(piece) / 1.4)
            elif first.isascii():
                tokens += 1
            else:
                tokens += len(first.encode()) // 2 + 1
        return min(tokens, len(text.encode()))


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
