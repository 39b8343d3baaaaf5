"""`kortana status`: ask a running bot's /readyz and say it readably, for a shell or a cron job.

Exit codes: 0 ready, 1 not ready (the bot answered 503 and says why, or an HTTP answer that is not Kor'tana's
/readyz: its status and the start of its body are shown), 2 no answer (nothing listens, the connection failed,
or no answer within the bound).
"""

from __future__ import annotations

import json

import aiohttp

from app.config import Settings
from app.safe_text import error_cause

READY, NOT_READY, UNREACHABLE = 0, 1, 2
ASK_BOUND_S = 5.0
MOST_BODY_BYTES = 64 * 1024  # a /readyz body is well under 1 KiB
BODY_SHOWN_CHARS = 200


def ready_url(settings: Settings) -> str | None:
    """The bot's /readyz from METRICS_HOST and METRICS_PORT; None when the endpoints are off."""
    if settings.metrics_port is None:
        return None
    host = settings.metrics_host
    if host in {"0.0.0.0", ""}:  # listening everywhere: ask it here
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.metrics_port}/readyz"


async def ask_readiness(url: str, bound_s: float = ASK_BOUND_S) -> tuple[int, str]:
    """The exit code and what to print."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=bound_s)) as session,
            session.get(url) as response,
        ):
            raw = await response.content.read(MOST_BODY_BYTES)
    except TimeoutError:
        return UNREACHABLE, f"kortana status: no answer from {url} within {bound_s:g} s"
    except aiohttp.ClientError as error:
        return UNREACHABLE, f"kortana status: cannot ask {url}: {error_cause(error)}"
    body = readyz_body(raw) if response.status in (200, 503) else None
    if body is None:  # something answered (a proxy's error page, another program): not ready, and what it said
        return NOT_READY, (
            f"kortana status: {url} answered HTTP {response.status}, not Kor'tana's /readyz: {body_start(raw)}"
        )
    ready = bool(body.get("ready")) and response.status == 200
    return (READY if ready else NOT_READY), readiness_text(url, ready, body["checks"])


def readyz_body(raw: bytes) -> dict | None:
    """The parsed /readyz body, or None when it is not one."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) and isinstance(body.get("checks"), dict) else None


def body_start(raw: bytes) -> str:
    """The start of a body on one line, unprintable characters shown as '?' (it is any program's text)."""
    text = " ".join(raw.decode("utf-8", "replace").split())
    shown = "".join(char if char.isprintable() else "?" for char in text[:BODY_SHOWN_CHARS])
    return (shown + ("…" if len(text) > BODY_SHOWN_CHARS else "")) or "(empty body)"


def readiness_text(url: str, ready: bool, checks: dict[str, object]) -> str:
    lines = [f"Kor'tana at {url}: {'READY' if ready else 'NOT READY'}"]
    width = max((len(name) for name in checks), default=0)
    for name, check in checks.items():
        ok = isinstance(check, dict) and check.get("ok") is True
        detail = check.get("detail", "") if isinstance(check, dict) else ""
        lines.append(f"  {name.ljust(width)}  {'ok  ' if ok else 'FAIL'}  {detail}")
    return "\n".join(lines)
