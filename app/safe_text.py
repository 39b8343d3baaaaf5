"""Text that is safe to count, store, show and log: valid Unicode, no credentials inside URLs, sizes as people read
them.

Every layer may use these (they import nothing of Kor'tana): engines make model output valid before it leaves
the chain, front ends make their input valid before it enters a turn, and log lines and errors pass URLs
through `redact_url_credentials` (`error_cause` does it for an error's own words).
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<credentials>[^/@\s]+)@")


def valid_unicode(text: str) -> str:
    """The text with paired surrogates joined into their character and lone ones replaced by U+FFFD.

    JSON escapes can carry half of a surrogate pair (`"\\ud83d"`); such a string cannot be encoded to UTF-8,
    so counting, storing or sending it would raise.
    """
    if not _LONE_SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def redact_url_credentials(text: str) -> str:
    """`scheme://user:password@host` anywhere in the text becomes `scheme://***@host`."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


def error_cause(error: BaseException) -> str:
    """The error's own words for the log (our errors never carry message text; URLs lose their credentials)."""
    return redact_url_credentials(str(error)) or type(error).__name__


def byte_size(count: int) -> str:
    """A size as people read it: 980 bytes, 200 kB, 1.2 MB (decimal units, as Discord shows them)."""
    if count < 1000:
        return f"{count} bytes"
    if count < 1_000_000:
        return f"{count / 1000:.0f} kB"
    return f"{count / 1_000_000:.1f} MB"
