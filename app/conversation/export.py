"""A conversation's history as files its user takes home: Markdown to read, JSON for programs.

Every message is in the export with its time (ISO 8601, UTC), who said it and which engine answered. A history
larger than a file may be (Discord's attachment limit) is split into numbered parts, each a complete document with
the export's header; a single message larger than a part is itself split into consecutive pieces, each marked as
continued. Nothing is ever cut: the parts together hold every character. Splitting was chosen over compression
because every part stays readable as it is, on a phone too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from app.storage import StoredMessage

FORMAT_VERSION = 1
TOO_SMALL = "the size limit cannot hold an export's header and one character of a message"
SPEAKERS = {"user": "You", "assistant": "Kor'tana"}


@dataclass(frozen=True, slots=True)
class Export:
    """What is exported: the messages of one conversation (in turn order), its scope, and when."""

    scope: str
    exported_at: datetime
    messages: Sequence[StoredMessage]


@dataclass(frozen=True, slots=True)
class ExportFile:
    name: str
    data: bytes


def iso_utc(moment: datetime | None) -> str | None:
    """`2025-06-01T12:00:00Z`; a time without a zone is taken as UTC (SQLite hands those out)."""
    if moment is None:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class _Piece:
    """A message, or one consecutive piece of a message too large for one part."""

    message: StoredMessage
    text: str
    continues: bool = False


class _Markdown:
    suffix = "md"

    @staticmethod
    def document(export: Export, entries: Sequence[str], part: tuple[int, int] | None) -> str:
        lines = [
            "# Kor'tana — conversation history",
            "",
            f"- Scope: {export.scope}",
            f"- Messages: {len(export.messages)}",
            f"- Exported at: {iso_utc(export.exported_at)}",
        ]
        if part is not None:
            lines.append(f"- Part {part[0]} of {part[1]}")
        return "\n".join(lines) + "\n" + "".join(entries)

    @staticmethod
    def entry(piece: _Piece) -> str:
        message = piece.message
        speaker = SPEAKERS.get(message.role, message.role)
        engine = f" ({message.engine})" if message.engine else ""
        continues = " · continued below" if piece.continues else ""
        # A blockquote keeps the user's own Markdown (a "---", a heading) from breaking the export's structure.
        quoted = "\n".join(f"> {line}" if line else ">" for line in piece.text.split("\n"))
        return f"\n**{speaker}**{engine} · {iso_utc(message.created_at)}{continues}\n\n{quoted}\n"


class _Json:
    suffix = "json"

    @staticmethod
    def document(export: Export, entries: Sequence[str], part: tuple[int, int] | None) -> str:
        header: dict[str, object] = {
            "format": "kortana-history",
            "version": FORMAT_VERSION,
            "scope": export.scope,
            "message_count": len(export.messages),
            "exported_at": iso_utc(export.exported_at),
        }
        if part is not None:
            header.update(part=part[0], parts=part[1])
        # One message per line: the sizes of a part's pieces add up, and a part can be packed without re-encoding.
        body = ",\n".join(entries)
        return f'{{"export": {json.dumps(header, ensure_ascii=False)},\n"messages": [\n{body}\n]}}\n'

    @staticmethod
    def entry(piece: _Piece) -> str:
        message = piece.message
        item: dict[str, object] = {
            "at": iso_utc(message.created_at),
            "role": message.role,
            "engine": message.engine,
            "text": piece.text,
        }
        if piece.continues:
            item["continues"] = True  # the next entry holds the rest of this message's text
        return json.dumps(item, ensure_ascii=False)


_Format = _Markdown | _Json
MARKDOWN = _Markdown()
JSON = _Json()


def to_markdown(export: Export) -> str:
    """The whole export as one Markdown document."""
    return MARKDOWN.document(export, [MARKDOWN.entry(_Piece(m, m.content)) for m in export.messages], None)


def to_json(export: Export) -> str:
    """The whole export as one JSON document: {"export": header, "messages": [{at, role, engine, text}, ...]}."""
    return JSON.document(export, [JSON.entry(_Piece(m, m.content)) for m in export.messages], None)


def export_files(export: Export, *, max_bytes: int, stem: str = "kortana-history") -> list[ExportFile]:
    """The export as Markdown then JSON, each one file (`stem.md`, `stem.json`) or, when larger than `max_bytes`,
    numbered parts of at most `max_bytes` each (`stem-1-of-3.md`, ...). Raises ValueError when `max_bytes` cannot
    hold a header and one character of a message."""
    return [*_files(MARKDOWN, export, max_bytes, stem), *_files(JSON, export, max_bytes, stem)]


def _files(fmt: _Format, export: Export, max_bytes: int, stem: str) -> list[ExportFile]:
    whole = fmt.document(export, [fmt.entry(_Piece(m, m.content)) for m in export.messages], None).encode()
    if len(whole) <= max_bytes:
        return [ExportFile(f"{stem}.{fmt.suffix}", whole)]
    # The header names the part's number and the count of parts, so their digits take room: try one digit, then
    # more until the parts' count fits in them.
    digits = 1
    while True:
        widest = 10**digits - 1
        room = max_bytes - _size(fmt.document(export, [], (widest, widest)))
        pieces = [entry for message in export.messages for entry in _entries(fmt, message, room)]
        parts = _pack(pieces, room, separator=_separator_size(fmt))
        if len(parts) <= widest:
            break
        digits += 1
    return [
        ExportFile(
            f"{stem}-{number}-of-{len(parts)}.{fmt.suffix}",
            fmt.document(export, part, (number, len(parts))).encode(),
        )
        for number, part in enumerate(parts, start=1)
    ]


def _entries(fmt: _Format, message: StoredMessage, room: int) -> list[str]:
    """The message's entries: one, or as many consecutive pieces as it takes for each to fit `room` bytes."""
    entry = fmt.entry(_Piece(message, message.content))
    if _size(entry) <= room:
        return [entry]
    if not message.content:
        raise ValueError(TOO_SMALL)
    entries = []
    text = message.content
    while text:
        length = _longest_fitting(text, lambda prefix: _size(fmt.entry(_Piece(message, prefix, True))) <= room)
        if length < len(text):
            length = _at_a_break(text, length)
        rest = text[length:]
        entries.append(fmt.entry(_Piece(message, text[:length], continues=bool(rest))))
        text = rest
    return entries


def _longest_fitting(text: str, fits: Callable[[str], bool]) -> int:
    """The most characters of `text`'s start that fit (a binary search: escaping makes sizes uneven)."""
    if not fits(text[:1]):
        raise ValueError(TOO_SMALL)
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(text[:middle]):
            low = middle
        else:
            high = middle - 1
    return low


def _at_a_break(text: str, length: int) -> int:
    """Where to end a piece of at most `length` characters: after a line or a word in its second half, if any."""
    for separator in ("\n", " "):
        cut = text.rfind(separator, length // 2, length)
        if cut != -1:
            return cut + 1
    return length


def _pack(entries: list[str], room: int, *, separator: int) -> list[list[str]]:
    """Consecutive entries into as few parts as their order allows, each part's entries within `room` bytes."""
    parts: list[list[str]] = []
    used = room + 1  # no part open yet
    for entry in entries:
        size = _size(entry)
        if parts and used + separator + size <= room:
            parts[-1].append(entry)
            used += separator + size
        else:
            parts.append([entry])
            used = size
    return parts


def _separator_size(fmt: _Format) -> int:
    return len(",\n") if fmt is JSON else 0


def _size(text: str) -> int:
    return len(text.encode())
