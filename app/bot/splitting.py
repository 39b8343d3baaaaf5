"""Splitting a long answer into Discord messages of at most 2,000 characters.

Cuts fall at a paragraph break if there is one in the second half of the page, else a line break, else a
space, else anywhere (never inside a ``` fence). A cut inside a code block closes the block on this page and
reopens it (with its language) on the next, so every page renders as the author meant.

Code blocks are tracked the way Discord renders them: every ``` toggles, wherever it stands, so a line with
an even number of them (inline ```code```) opens nothing. The language of a block is the word that follows
its opening fence alone on that line; any other text there is part of the code, never carried to a reopened
fence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DISCORD_LIMIT = 2000
FENCE = "```"
CLOSING = "\n" + FENCE
_LANGUAGE = re.compile(r"[\w+#.-]{1,20}")


@dataclass(frozen=True, slots=True)
class Page:
    """One message: the author's text (`body`) and the fences the splitter added around it."""

    reopened: str  # the fence line that continues a code block from the previous page, or ""
    body: str
    closed: bool  # the splitter closed a code block that continues on the next page

    def __str__(self) -> str:
        return self.reopened + self.body + (CLOSING if self.closed else "")


def split_message(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    return [str(page) for page in split_pages(text, limit)]


def split_pages(text: str, limit: int = DISCORD_LIMIT) -> list[Page]:
    pages: list[Page] = []
    reopened = ""
    start = 0  # where the rest of the text begins
    while len(reopened) + len(text) - start > limit:
        rest = text[start:]
        cut = _best_cut(rest, room=limit - len(reopened) - len(CLOSING))
        end = start + cut
        language = _open_block_language(text, end)
        in_code = language is not None
        body = rest[:cut].rstrip("\n") if in_code else rest[:cut].rstrip()
        if body or in_code:  # a page of only whitespace is no message (Discord refuses it)
            pages.append(Page(reopened, body, closed=in_code))
        reopened = f"{FENCE}{language}\n" if in_code else ""
        # The next page starts at the next line's text; inside code, its indentation is kept.
        start = end + len(text[end:]) - len(text[end:].lstrip("\n" if in_code else " \n"))
    if start < len(text) and text[start:].strip():
        pages.append(Page(reopened, text[start:], closed=False))
    return pages


def _best_cut(text: str, room: int) -> int:
    """Where to end a page of at most `room` characters, preferring natural boundaries."""
    window = text[:room]
    for separator in ("\n\n", "\n", " "):
        position = window.rfind(separator, room // 2)
        if position > 0:
            return position + len(separator) if separator == " " else position
    for back in (1, 2):  # a hard cut must not split a fence into two halves
        if text[room - back : room - back + len(FENCE)] == FENCE:
            return room - back
    return room


def _open_block_language(text: str, end: int) -> str | None:
    """If text[:end] ends inside a code block, the language of that block ("" for none); else None."""
    fences = [match.end() for match in re.finditer(FENCE, text[:end])]
    if len(fences) % 2 == 0:
        return None
    after_fence = fences[-1]
    line_end = text.find("\n", after_fence)
    info = text[after_fence:line_end].strip() if line_end != -1 else ""
    return info if _LANGUAGE.fullmatch(info) else ""
