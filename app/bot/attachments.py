"""The files attached to a message the bot answers: which are text (`choose_files`), and their text, read
within the size cap and the download bound (`read_files`), as the blocks the user's turn carries.

A file is text by its content type (text/*, JSON, XML, YAML, …) or, since Discord may send none, by its
extension (documents, logs, data and source code); an image (png, jpeg, webp, gif) goes to the engines as an
image (app/bot/images). The others are named in one sentence. Each text file is
downloaded from Discord's CDN streaming, never more than `FileRules.max_bytes` (a larger file is cut there,
with a marker in its block and a notice to the user), within `FileRules.download_bound_s`, and decoded by
`app.bot.file_text` (bytes that turn out not to be text are named like the others).

The turn's text is the user's words first, then each file's block (`turn_text`): when the whole turn does not
fit the token budget, the service cuts its end, so the files are cut before the user's words.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import discord

from app.bot.file_text import cut_note, decode_text, file_block, safe_file_name
from app.bot.sentences import file_cut, files_failed, files_skipped, files_unreadable

log = logging.getLogger(__name__)

TEXT_CONTENT_TYPES = frozenset(
    {
        "application/json",
        "application/ld+json",
        "application/xml",
        "application/x-yaml",
        "application/yaml",
        "application/toml",
        "application/javascript",
        "application/x-javascript",
        "application/typescript",
        "application/x-sh",
        "application/x-python",
        "application/sql",
        "application/graphql",
        "application/x-httpd-php",
        "application/x-tex",
        "application/x-ndjson",
        "image/svg+xml",
    }
)
_DOCUMENTS_AND_DATA = (
    ".txt .md .markdown .rst .log .csv .tsv .json .jsonl .ndjson .xml .yaml .yml .toml .ini .cfg .conf .env "
    ".properties .tex .srt .vtt .diff .patch .html .htm .css .scss .sass .less .svg .sql .graphql .proto"
)
_SOURCE_CODE = (
    ".py .pyi .js .mjs .cjs .jsx .ts .tsx .java .kt .kts .scala .groovy .gradle .c .h .cc .cpp .cxx .hpp .hh .cs "
    ".fs .go .rs .rb .php .pl .pm .lua .r .jl .swift .m .mm .dart .ex .exs .erl .hs .ml .clj .elm .vue .svelte "
    ".sh .bash .zsh .fish .ps1 .bat .cmd .vim .nix .tf .hcl .cmake .mk .asm .s .zig .nim .sol .v .sv .vhd "
    ".dockerfile .gitignore .editorconfig"
)
TEXT_EXTENSIONS = frozenset(f"{_DOCUMENTS_AND_DATA} {_SOURCE_CODE}".split())
TEXT_FILE_NAMES = frozenset({"dockerfile", "makefile", "readme", "license", "changelog", "procfile", "gemfile"})
# The images an engine that sees takes (app/bot/images), by content type, or by extension when Discord sends none.
IMAGE_CONTENT_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
IMAGE_EXTENSIONS = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif"
}


@dataclass(frozen=True, slots=True)
class FileRules:
    """How much of a message's files is read: ATTACHMENT_MAX_BYTES of each, ATTACHMENT_MAX_FILES of them,
    each download within ATTACHMENT_DOWNLOAD_SECONDS."""

    max_bytes: int = 200_000
    max_files: int = 5
    download_bound_s: float = 10.0


class Attachment(Protocol):
    """What is read of a `discord.Attachment`."""

    @property
    def filename(self) -> str: ...

    @property
    def content_type(self) -> str | None: ...

    @property
    def size(self) -> int: ...

    @property
    def url(self) -> str: ...


# The first `limit` bytes at a URL, and whether more followed; raises on a failed download.
Fetch = Callable[[str, int], Awaitable[tuple[bytes, bool]]]


@dataclass(frozen=True, slots=True)
class ChosenFiles:
    """A message's attachments sorted: the text files to read and the images (at most `max_files` of both), the
    rest by name."""

    to_read: list[Attachment]
    unreadable: list[str]  # neither text nor an image, by type or extension
    skipped: list[str]  # text or images, beyond max_files
    max_files: int
    images: list[Attachment] = field(default_factory=list)  # for the engines (app/bot/images)

    def refusal(self) -> str:
        """What a message with these files and no words is told: nothing here can be read."""
        return " ".join(_sentences(self.unreadable, self.skipped, [], max_files=self.max_files))


@dataclass(slots=True)
class ReadFiles:
    """What became of a message's files: the blocks for its turn, and what the user is told."""

    blocks: list[str] = field(default_factory=list)
    cut: list[tuple[str, int, int]] = field(default_factory=list)  # (name, its size, bytes read)
    unreadable: list[str] = field(default_factory=list)  # not text: by type or extension, or by content
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # the download failed or took too long
    max_files: int = 0

    @classmethod
    def unread(cls, chosen: ChosenFiles) -> ReadFiles:
        """Before any download: only the files that were not chosen."""
        return cls(unreadable=list(chosen.unreadable), skipped=list(chosen.skipped), max_files=chosen.max_files)

    def notices(self) -> list[str]:
        """The sentences for the user about their files (none when every file was read whole)."""
        sentences = _sentences(self.unreadable, self.skipped, self.failed, max_files=self.max_files)
        return [*sentences, *(file_cut(name, size, read) for name, size, read in self.cut)]


def is_text_file(filename: str, content_type: str | None) -> bool:
    """A text file by its content type, else by its extension (or its whole name: Makefile, Dockerfile)."""
    if content_type:
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind.startswith("text/") or kind in TEXT_CONTENT_TYPES or kind.endswith(("+json", "+xml")):
            return True
    name = posixpath.basename(filename.lower())
    extension = posixpath.splitext(name)[1]
    # A dotfile (.gitignore) has no extension: its whole name is looked up.
    return extension in TEXT_EXTENSIONS or name in TEXT_FILE_NAMES or name in TEXT_EXTENSIONS


def is_image(filename: str, content_type: str | None) -> bool:
    """An image an engine may see: by its content type, or by its extension when Discord sent none."""
    if content_type:
        return content_type.split(";", 1)[0].strip().lower() in IMAGE_CONTENT_TYPES
    return posixpath.splitext(filename.lower())[1] in IMAGE_EXTENSIONS


def choose_files(attachments: Sequence[Attachment], rules: FileRules) -> ChosenFiles:
    """Sort a message's attachments (no download): the text files to read and the images, in order, and the
    others. ATTACHMENT_MAX_FILES counts both kinds."""
    def kind(a: Attachment) -> str | None:
        if is_text_file(a.filename, a.content_type):
            return "text"
        return "image" if is_image(a.filename, a.content_type) else None

    usable = [a for a in attachments if kind(a) is not None]
    chosen = usable[: rules.max_files]
    return ChosenFiles(
        [a for a in chosen if kind(a) == "text"],
        [safe_file_name(a.filename) for a in attachments if kind(a) is None],
        [safe_file_name(a.filename) for a in usable[rules.max_files:]],
        rules.max_files,
        [a for a in chosen if kind(a) == "image"],
    )


async def read_files(chosen: ChosenFiles, fetch: Fetch, rules: FileRules) -> ReadFiles:
    """Download and decode the chosen files, at once; each within the download bound and the size cap."""
    result = ReadFiles.unread(chosen)
    bound_s = rules.download_bound_s
    downloads = await asyncio.gather(*(download(a, fetch, rules.max_bytes, bound_s) for a in chosen.to_read))
    for attachment, downloaded in zip(chosen.to_read, downloads, strict=True):
        name = safe_file_name(attachment.filename)
        if downloaded is None:
            result.failed.append(name)
            continue
        data, more = downloaded
        cut = more or attachment.size > len(data)
        text = decode_text(data, cut=cut)
        if text is None:
            result.unreadable.append(name)
            continue
        note = None
        if cut:
            size = max(attachment.size, len(data))
            note = cut_note(size, len(data))
            result.cut.append((name, size, len(data)))
        result.blocks.append(file_block(attachment.filename, text, note))
    return result


def turn_text(words: str, blocks: Sequence[str]) -> str:
    """The user's words, then the files' blocks (the service cuts from the end: the files go first)."""
    return "\n\n".join(part for part in (words, *blocks) if part)


async def download(
    attachment: Attachment, fetch: Fetch, max_bytes: int, bound_s: float
) -> tuple[bytes, bool] | None:
    """At most `max_bytes` of the attachment (and whether it had more) within `bound_s`; None when the download
    failed or took longer (logged)."""
    try:
        async with asyncio.timeout(bound_s):
            return await fetch(attachment.url, max_bytes)
    except TimeoutError:
        log.warning("An attachment took over %g s to download", bound_s)
    except (aiohttp.ClientError, discord.HTTPException, DownloadFailed) as error:
        log.warning("An attachment could not be downloaded: %s", error)
    return None


class DownloadFailed(Exception):
    """The CDN answered a download with an error status."""


@asynccontextmanager
async def cdn_fetcher(http: discord.http.HTTPClient) -> AsyncIterator[Fetch]:
    """A `Fetch` over the client's own connection pool and proxy (discord.py's `Attachment.read` reads a whole
    file; this one stops at the limit)."""
    async with aiohttp.ClientSession(
        connector=http.connector, connector_owner=False, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def fetch(url: str, limit: int) -> tuple[bytes, bool]:
            async with session.get(url, proxy=http.proxy, proxy_auth=http.proxy_auth) as response:
                if response.status != 200:
                    raise DownloadFailed(f"HTTP {response.status}")
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > limit:
                        return bytes(data[:limit]), True
                return bytes(data), False

        yield fetch


def _sentences(unreadable: list[str], skipped: list[str], failed: list[str], *, max_files: int) -> list[str]:
    sentences = []
    if unreadable:
        sentences.append(files_unreadable(unreadable))
    if skipped:
        sentences.append(files_skipped(skipped, max_files))
    if failed:
        sentences.append(files_failed(failed))
    return sentences
