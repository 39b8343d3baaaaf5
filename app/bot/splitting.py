"""Splitting a long answer into Discord messages of at most 2,000 characters.

Cuts fall at a paragraph break if there is one in the second half of the page, else a line break, else a
space, else anywhere. A cut inside a ``` code block closes the fence on this page and reopens it (with its
language) on the next, so every page renders as the author meant.
"""

from __future__ import annotations

import re

DISCORD_LIMIT = 2000
FENCE = "```"
_FENCE_WITH_LANGUAGE = re.compile(r"```[\w+#.-]{0,20}")


def split_message(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    pages: list[str] = []
    reopen = ""  # the fence line that starts the next page when a code block continues there
    rest = text
    while len(reopen) + len(rest) > limit:
        body = reopen + rest
        cut = _best_cut(body, room=limit - len(FENCE) - 1, floor=len(reopen) + 1)
        page, rest = body[:cut], body[cut:].lstrip("\n")
        fence = _open_fence(page)
        if fence is None:
            reopen = ""
            rest = rest.lstrip(" ")
        else:
            page = page.rstrip("\n") + "\n" + FENCE
            reopen = fence + "\n"
        pages.append(page.rstrip() or page)
    if rest.strip():
        pages.append(reopen + rest)
    return pages


def _best_cut(text: str, room: int, floor: int) -> int:
    """Where to end a page of at most `room` characters, preferring natural boundaries."""
    window = text[:room]
    half = room // 2
    for separator in ("\n\n", "\n", " "):
        position = window.rfind(separator, max(floor, half))
        if position > 0:
            return position + len(separator) if separator == " " else position
    return room


def _open_fence(page: str) -> str | None:
    """The opening fence (e.g. ```python) if the page ends inside a code block, else None.

    Only the fence and its language are reopened, never text after them on the same line: a long first
    line would otherwise be carried to every following page.
    """
    opening: str | None = None
    for line in page.split("\n"):
        stripped = line.strip()
        if stripped.startswith(FENCE):
            opening = None if opening is not None else _FENCE_WITH_LANGUAGE.match(stripped).group()  # type: ignore[union-attr]
    return opening
