"""`kortana status`: ask a running bot's /readyz and say it readably, for a shell or a cron job.

Exit codes: 0 ready, 1 not ready (the bot answered 503 and says why), 2 no usable answer (nothing listens,
no answer within the bound, or what answered is not Kor'tana's /readyz).
"""

from __future__ import annotations

import aiohttp

from app.config import Settings
from app.safe_text import error_cause

READY, NOT_READY, UNREACHABLE = 0, 1, 2
ASK_BOUND_S = 5.0


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
            body = await response.json(content_type=None) if response.status in (200, 503) else None
    except TimeoutError:
        return UNREACHABLE, f"kortana status: no answer from {url} within {bound_s:g} s"
    except (aiohttp.ClientError, ValueError) as error:
        return UNREACHABLE, f"kortana status: cannot ask {url}: {error_cause(error)}"
    if not isinstance(body, dict) or not isinstance(body.get("checks"), dict):
        return UNREACHABLE, f"kortana status: {url} is not Kor'tana's /readyz (HTTP {response.status})"
    ready = bool(body.get("ready")) and response.status == 200
    return (READY if ready else NOT_READY), readiness_text(url, ready, body["checks"])


def readiness_text(url: str, ready: bool, checks: dict[str, object]) -> str:
    lines = [f"Kor'tana at {url}: {'READY' if ready else 'NOT READY'}"]
    width = max((len(name) for name in checks), default=0)
    for name, check in checks.items():
        ok = isinstance(check, dict) and check.get("ok") is True
        detail = check.get("detail", "") if isinstance(check, dict) else ""
        lines.append(f"  {name.ljust(width)}  {'ok  ' if ok else 'FAIL'}  {detail}")
    return "\n".join(lines)
