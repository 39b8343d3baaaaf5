"""What a turn does with a user's text before it is counted, stored or shown (`clean_text`). What an engine
streams is made valid by the chain, chunk by chunk."""

from __future__ import annotations

import unicodedata

from app.safe_text import valid_unicode

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
