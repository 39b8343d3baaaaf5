"""The images a user attached to a turn (`TurnImage`): the reference the history keeps, and what the engines get.

Only the reference is stored (file name, size, content type, Discord CDN URL; `messages.images`), and only the
newest turn's images reach the engines as images: an older turn's go to every engine as the text note
(`app.engines.image_note`), since CDN URLs expire and every image costs its fixed share of the budget
(IMAGE_TOKENS, counted in the stored message's token count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from app.engines import ChatImage, ChatMessage, image_note, with_notes
from app.storage import StoredImage, StoredMessage

# What OpenAI counts for one 1024x1024 image in high detail (85 base + 4 tiles of 170): a fixed, documented price
# per image, whatever the engine's own vision encoder costs, as the budget cannot see the image.
DEFAULT_IMAGE_TOKENS = 765


@dataclass(frozen=True, slots=True)
class TurnImage:
    """An attached image. `inline`: a `data:` URL of its bytes, sent instead of `url` (IMAGE_DELIVERY=inline); it
    lives only in memory for the turn, never stored, never in a repr (so never in a log line)."""

    name: str
    size: int
    content_type: str
    url: str
    inline: str | None = field(default=None, repr=False)

    def reference(self) -> StoredImage:
        return StoredImage(self.name, self.size, self.content_type, self.url)

    def for_engine(self) -> ChatImage:
        return {"url": self.inline or self.url, "name": self.name, "size": self.size}


def images_tokens(count: int, image_tokens: int) -> int:
    """What `count` images add to a message's token count."""
    return count * image_tokens


def as_sent(message: StoredMessage) -> str:
    """A stored message's text with a note for each of its images: how an older turn's images are sent."""
    if not message.images:
        return message.content
    return with_notes(message.content, [image_note(image.name, image.size) for image in message.images])


def newest_with_images(messages: list[ChatMessage], images: Sequence[TurnImage]) -> list[ChatMessage]:
    """The context's messages with the turn's images on its newest (last) message, for the chain to render."""
    if images and messages:
        messages[-1] = {**messages[-1], "images": [image.for_engine() for image in images]}
    return messages
