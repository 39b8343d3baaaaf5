"""Faults a test scripts and the rate limits Discord enforces: errors and 429s on chosen routes, slow
answers, closes on IDENTIFY, and fixed-window buckets with X-RateLimit-* headers."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.discord.state import DiscordState, RestCall, compile_pattern
from tests.fakes.discord.wire import API_PREFIX, BUCKET, error_body, json_response

#: Approximations of Discord's per-route limits, for ``FakeDiscord(rate_limits=...)``.
#: Keys are "METHOD route-template"; the bucket is per major parameter (channel or webhook token).
DISCORD_LIKE_RATE_LIMITS: dict[str, tuple[int, float]] = {
    "POST /channels/{channel_id}/messages": (5, 5.0),
    "PATCH /channels/{channel_id}/messages/{message_id}": (5, 5.0),
    "PATCH /webhooks/{application_id}/{token}/messages/{message_id}": (5, 5.0),
    "POST /webhooks/{application_id}/{token}": (5, 5.0),
}



@dataclass
class Scripted:
    """Something done to the next ``times`` calls (None: all) matching method + path."""

    method: str
    pattern: re.Pattern[str]
    times: int | None
    hits: int = field(default=0, kw_only=True)

    def take(self, method: str, path: str) -> bool:
        """True if this call gets it (and it is counted)."""
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method not in ("*", method) or self.pattern.fullmatch(path) is None:
            return False
        self.hits += 1
        return True


@dataclass
class ScriptedFault(Scripted):
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class ScriptedDelay(Scripted):
    seconds: float



class ScriptedFaults(DiscordState):
    def fail(
        self,
        method: str,
        pattern: str | re.Pattern[str],
        status: int,
        *,
        code: int = 0,
        message: str | None = None,
        times: int | None = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> ScriptedFault:
        """Answer the next ``times`` calls (None: all) matching method+path with an error."""
        if status >= 500:
            raise ValueError("discord.py retries 5xx with sleeps of 1+3+5+7+9 s; script a 4xx instead")
        fault = ScriptedFault(
            method.upper(),
            compile_pattern(pattern),
            times,
            status,
            body if body is not None else error_body(code, message or f"{status}: scripted failure"),
            dict(headers or {}),
        )
        self._faults.append(fault)
        return fault

    def rate_limit(
        self,
        method: str,
        pattern: str | re.Pattern[str],
        *,
        times: int | None = 1,
        retry_after: float = 0.05,
        is_global: bool = False,
    ) -> ScriptedFault:
        """429 on the next ``times`` matching calls, the way Discord sends it (discord.py sleeps, retries)."""
        headers = {
            "Retry-After": str(retry_after),
            "Via": "1.1 google",
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": str(retry_after),
            "X-RateLimit-Scope": "shared" if not is_global else "global",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        return self.fail(method, pattern, 429, times=times, headers=headers, body=body)

    def delay(
        self, method: str, pattern: str | re.Pattern[str], seconds: float, *, times: int | None = 1
    ) -> ScriptedDelay:
        """Hold the next ``times`` calls (None: all) matching method+path for ``seconds`` before handling them."""
        delay = ScriptedDelay(method.upper(), compile_pattern(pattern), times, seconds)
        self._delays.append(delay)
        return delay

    def close_on_identify(self, code: int, times: int = 1) -> None:
        """Close the next ``times`` IDENTIFYs with this close code (4004 auth failed, 4014 intents...)."""
        self._identify_faults.extend([code] * times)

    async def _hold_if_delayed(self, method: str, path: str) -> None:
        for delay in self._delays:
            if delay.take(method, path):
                await asyncio.sleep(delay.seconds)

    def _scripted(self, method: str, path: str) -> web.Response | None:
        for fault in self._faults:
            if fault.take(method, path):
                return json_response(fault.body, status=fault.status, headers=fault.headers)
        return None

    def _check_rate_limit(self, request: web.Request, call: RestCall) -> web.Response | None:
        if not self.rate_limits or request.match_info.route.resource is None:
            return None
        template = request.match_info.route.resource.canonical[len(API_PREFIX):]
        limit = self.rate_limits.get(f"{request.method} {template}")
        if limit is None:
            return None
        count, per = limit
        info = request.match_info
        major = info.get("channel_id") or info.get("token") or info.get("guild_id") or ""
        key = f"{request.method} {template} {major}"
        now = time.monotonic()
        window_end, used = self._buckets.get(key, (0.0, 0))
        if now >= window_end:
            window_end, used = now + per, 0
        reset_after = max(window_end - now, 0.001)
        headers = {
            "X-RateLimit-Limit": str(count),
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Bucket": f"fake-{abs(hash(request.method + template)):x}",
        }
        if used >= count:
            headers.update({"X-RateLimit-Remaining": "0", "Retry-After": f"{reset_after:.3f}", "Via": "1.1 google"})
            body = {"message": "You are being rate limited.", "retry_after": reset_after, "global": False}
            return json_response(body, status=429, headers=headers)
        used += 1
        self._buckets[key] = (window_end, used)
        headers["X-RateLimit-Remaining"] = str(count - used)
        request[BUCKET] = headers
        return None

