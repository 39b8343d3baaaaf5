"""The images attached to a message the bot answers (chosen beside text files: `attachments.choose_files`), each
as the turn's `TurnImage` (`read_images`), by IMAGE_DELIVERY:

- url: the Discord CDN URL, which the engine's server fetches itself; nothing is downloaded here.
- inline: the bytes, downloaded from the CDN (at most `ImageRules.max_bytes`: checked against the attachment's size
  before downloading and again while streaming; within `ImageRules.download_bound_s`), sent as a `data:` URL. The
  bytes live in memory for the turn only: never stored, never logged. An image over the cap gets one sentence.

Which engine sees them, and what one that cannot gets instead, is the chain's (`app.engines.images`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import mimetypes
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from app.bot.attachments import IMAGE_EXTENSIONS, Attachment, Fetch, download
from app.bot.file_text import safe_file_name
from app.bot.sentences import files_failed, images_too_large
from app.conversation.turn_images import TurnImage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImageRules:
    """How a message's images reach the engines: IMAGE_DELIVERY, IMAGE_MAX_BYTES (inline only), and the download
    bound of attachments (ATTACHMENT_DOWNLOAD_SECONDS)."""

    delivery: Literal["url", "inline"] = "url"
    max_bytes: int = 5_000_000
    download_bound_s: float = 10.0

    @property
    def inline(self) -> bool:
        return self.delivery == "inline"


@dataclass(slots=True)
class ReadImages:
    """What became of a message's images: those for the turn, and what the user is told of the others."""

    images: list[TurnImage] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    max_bytes: int = 0

    def notices(self) -> list[str]:
        sentences = []
        if self.too_large:
            sentences.append(images_too_large(self.too_large, self.max_bytes))
        if self.failed:
            sentences.append(files_failed(self.failed))
        return sentences


def image_type(filename: str, content_type: str | None) -> str:
    if content_type:
        return content_type.split(";", 1)[0].strip().lower()
    extension = posixpath.splitext(filename.lower())[1]
    return IMAGE_EXTENSIONS.get(extension) or mimetypes.guess_type(filename)[0] or "application/octet-stream"


async def read_images(attachments: Sequence[Attachment], fetch: Fetch | None, rules: ImageRules) -> ReadImages:
    """The chosen images as the turn's; inline, downloaded at once (each within the bound and the cap)."""
    result = ReadImages(max_bytes=rules.max_bytes)
    if not rules.inline:
        result.images = [_image(attachment) for attachment in attachments]
        return result
    assert fetch is not None, "inline delivery downloads"
    small = [a for a in attachments if a.size <= rules.max_bytes]
    result.too_large = [safe_file_name(a.filename) for a in attachments if a.size > rules.max_bytes]
    bound_s = rules.download_bound_s
    downloads = await asyncio.gather(*(download(a, fetch, rules.max_bytes, bound_s) for a in small))
    for attachment, downloaded in zip(small, downloads, strict=True):
        name = safe_file_name(attachment.filename)
        if downloaded is None:
            result.failed.append(name)
        elif downloaded[1]:  # Discord's size was wrong: more bytes came than the cap
            result.too_large.append(name)
        else:
            result.images.append(_image(attachment, downloaded[0]))
    return result


def _image(attachment: Attachment, data: bytes | None = None) -> TurnImage:
    kind = image_type(attachment.filename, attachment.content_type)
    inline = None if data is None else f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"
    size = attachment.size if data is None else len(data)
    return TurnImage(safe_file_name(attachment.filename), size, kind, attachment.url, inline)


