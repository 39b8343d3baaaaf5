"""Long text shown inside a message: a Discord block quote cut to fit."""

from __future__ import annotations


def quoted_within(text: str, limit: int) -> str:
    """`text` as a Discord block quote of at most `limit` characters, cut with "…" when longer."""
    quoted = "\n".join(f"> {line}" for line in text.strip().split("\n"))
    return quoted if len(quoted) <= limit else quoted[: limit - 1].rstrip() + "…"
