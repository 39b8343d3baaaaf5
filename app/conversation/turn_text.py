"""What a turn does with text before it is counted, stored or shown: what a user sends is cleaned
(`clean_text`), what an engine streams is made valid Unicode chunk by chunk (`ValidChunks`)."""

from __future__ import annotations

import unicodedata

from app.safe_text import valid_unicode


class ValidChunks:
    """Streamed text made valid Unicode chunk by chunk; a high surrogate ending a chunk waits for its other half
    (servers split an emoji's surrogate pair across two chunks). NUL goes too: PostgreSQL text cannot hold it,
    and what is shown is what is stored."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, chunk: str) -> str:
        chunk, self._held = self._held + chunk, ""
        if chunk and "\ud800" <= chunk[-1] <= "\udbff":
            chunk, self._held = chunk[:-1], chunk[-1]
        return valid_unicode(chunk).replace("\x00", "")

    def flush(self) -> str:
        held, self._held = self._held, ""
        return valid_unicode(held)

    def drop(self) -> None:
        self._held = ""


_INVISIBLE_EDGES = " \t\r\n\u200b\u200c\u200d\u2060\ufeff\u00ad\u3000"
# Characters that show nothing on their own: Unicode's default-ignorable code points (besides category Cf)
# and the blanks that render as empty space (Hangul fillers, the Braille blank).
_SHOW_NOTHING = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u2800\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))  # variation selectors
    + "".join(map(chr, range(0xFFF0, 0xFFF9)))
)


def clean_text(text: str) -> str:
    """Valid Unicode without control characters or invisible padding at the ends; keep everything a person
    wrote. A text of nothing visible is empty."""
    text = valid_unicode(text)
    kept = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")  # NUL included
    kept = kept.strip(_INVISIBLE_EDGES)
    return kept if any(_shows_something(ch) for ch in kept) else ""


def _shows_something(ch: str) -> bool:
    if ch.isspace() or ch in _SHOW_NOTHING:
        return False
    if "\U000e0000" <= ch <= "\U000e0fff":
        return False  # tags and the variation selectors supplement
    return unicodedata.category(ch) != "Cf"
