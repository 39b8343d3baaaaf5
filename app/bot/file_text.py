"""A text file's bytes as text, safely (`decode_text`), and as the block it takes in the user's turn
(`file_block`).

Decoding never raises: a byte-order mark picks UTF-8, UTF-16 or UTF-32; otherwise the bytes are read as UTF-8,
undecodable bytes replaced (a Latin-1 "café" reads as "caf�"). Bytes that are not text (a NUL byte without a
BOM, or more than a tenth of the characters replaced) are None: the file is treated as binary.

The block format, one per file, after the user's own words:

    [file: name.py]
    ```
    …the file's text…
    ```
    [… cut: the file is 1.2 MB; I read the first 200 kB]    (only when the size cap cut it)

The fence is longer than any run of backticks in the file, so a file holding ``` cannot close it early.
"""

from __future__ import annotations

import codecs
import re
import unicodedata

from app.safe_text import byte_size

# Longest BOMs first: UTF-32-LE's begins with UTF-16-LE's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
MAX_REPLACED_SHARE = 0.1  # more characters no text holds than this share of the text: not text
_NOT_TEXT_CATEGORIES = frozenset({"Cc", "Co", "Cn", "Cs"})
REPLACEMENT = "\ufffd"
_FILE_NAME_UNSAFE = re.compile(r"[\x00-\x1f\x7f\[\]`]")
_BACKTICK_RUNS = re.compile(r"`{3,}")


def decode_text(data: bytes, *, cut: bool = False) -> str | None:
    """The text of a file's bytes, or None when they are not text. `cut`: the bytes are the first part of a
    longer file, so a character split at the end is dropped, not replaced."""
    encoding = next((encoding for bom, encoding in _BOMS if data.startswith(bom)), None)
    if encoding is None and b"\x00" in data:  # NUL bytes are binary, unless UTF-16/32 (a BOM) made them
        return None
    text = _decode(data, encoding or "utf-8", cut=cut)
    # A BOM followed by anything is still no proof of text: too many characters no text holds say binary. (Without
    # one, UTF-8 decoding marks every byte it cannot read: counting the replacements is enough, and quicker.)
    odd = text.count(REPLACEMENT) if encoding is None else sum(map(_not_text, text))
    if odd > MAX_REPLACED_SHARE * max(1, len(text)):
        return None
    return text


def _not_text(character: str) -> bool:
    """A character that text files do not hold: replaced, a control (but tab and line ends), private or unassigned."""
    if character == REPLACEMENT:
        return True
    return character not in "\t\n\r" and unicodedata.category(character) in _NOT_TEXT_CATEGORIES


def _decode(data: bytes, encoding: str, *, cut: bool) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    # Not final when cut: an incomplete sequence at the end stays in the decoder instead of becoming "�".
    return decoder.decode(data, final=not cut).removeprefix("\ufeff")


def file_block(name: str, text: str, cut_note: str | None = None) -> str:
    """The block a file takes in the user's turn (the format is the module's)."""
    longest = max((len(run) for run in _BACKTICK_RUNS.findall(text)), default=2)
    fence = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") or not text else text + "\n"
    block = f"[file: {safe_file_name(name)}]\n{fence}\n{body}{fence}"
    return block if cut_note is None else f"{block}\n{cut_note}"


def safe_file_name(name: str) -> str:
    """A file name as the turn shows it: on one line, without brackets or backticks that could end its label."""
    cleaned = _FILE_NAME_UNSAFE.sub("_", name).strip()
    return cleaned[:100] or "file"


def cut_note(size: int, read: int) -> str:
    """The marker at the end of a file the size cap cut."""
    return f"[… cut: the file is {byte_size(size)}; I read the first {byte_size(read)}]"


