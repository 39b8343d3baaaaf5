"""A turn's images, rendered for one engine right before it is asked (`for_engine`).

The conversation hands the chain messages whose newest user message may carry `images` (`ChatImage`s). For an
engine that sees (`SeesImages`), that message's content becomes OpenAI-style content parts: its text, then one
`image_url` part per image:

    [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "https://cdn…/cat.png"}}]

For any other engine its text gets one short note per image instead, on lines of their own:

    what is this?
    [the user attached an image: cat.png, 48 kB]

So the chain's failover from a vision tier to a text-only one (and to echo) needs nothing more: each call renders
the same messages for its own engine. No engine ever receives the `images` key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.engines.contract import ChatImage, ChatMessage
from app.safe_text import byte_size

_NAME_UNSAFE = str.maketrans({character: "_" for character in "[]`\r\n\t"})
MAX_NOTE_NAME = 100


def for_engine(messages: Sequence[ChatMessage], *, sees_images: bool) -> list[ChatMessage]:
    """The messages as this engine takes them: images as content parts when it sees, else as text notes.
    Messages without images are passed as they are."""
    if not any("images" in message for message in messages):
        return list(messages)
    return [_rendered(message, sees_images) for message in messages]


def image_note(name: str, size: int) -> str:
    """What an engine that cannot see reads in place of an image (also for every image of an older turn)."""
    return f"[the user attached an image: {_note_name(name)}, {byte_size(size)}]"


def with_notes(text: str, notes: Sequence[str]) -> str:
    """The text with the image notes after it, one a line (the notes alone for a message that was only images)."""
    return "\n".join(part for part in (text, *notes) if part)


def _rendered(message: ChatMessage, sees_images: bool) -> ChatMessage:
    images = message.get("images")
    plain: ChatMessage = {"role": message["role"], "content": message["content"]}
    if not images:
        return plain
    if sees_images:
        plain["content"] = _content_parts(message["content"], images)  # type: ignore[typeddict-item]
        return plain
    plain["content"] = with_notes(message["content"], [image_note(i["name"], i["size"]) for i in images])
    return plain


def _content_parts(text: str, images: Sequence[ChatImage]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    parts.extend({"type": "image_url", "image_url": {"url": image["url"]}} for image in images)
    return parts


def _note_name(name: str) -> str:
    """A file name on one line, without what could end the note's brackets early."""
    return " ".join(name.translate(_NAME_UNSAFE).split())[:MAX_NOTE_NAME] or "image"


