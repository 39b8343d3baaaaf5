"""Discord's REST calls counted by method and route template (discord.py's `http_trace`, an aiohttp TraceConfig).

The route is the path after the API's version with every id, token and name taken out: `/channels/{id}/messages`,
`/webhooks/{id}/{token}/messages/@original`. Only the fixed words of Discord's routes stay, so the labels are
bounded and never carry an id, an interaction token or a file's name; a route beyond MAX_ROUTES is `other`.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import aiohttp

from app.conversation.metrics import Metrics

MAX_ROUTES = 100
_WORD = re.compile(r"[a-z][a-z\-_]{0,31}|@me|@original")  # Discord's fixed path words (lower case, no digits)
_TOKEN_AFTER = {"webhooks", "interactions"}  # /webhooks/{id}/{token}, /interactions/{id}/{token}
_NAME_AFTER = {"reactions"}  # /reactions/{emoji}: a name someone chose
_NAMES_BELOW = {"attachments"}  # the CDN's /attachments/{id}/{id}/{file name}
_VERSION = re.compile(r"v\d+")


def route_template(path: str) -> str:
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["api"]:
        parts = parts[1:]
    if parts and _VERSION.fullmatch(parts[0]):
        parts = parts[1:]
    template: list[str] = []
    for index, part in enumerate(parts):
        if index >= 2 and parts[index - 2] in _TOKEN_AFTER:
            template.append("{token}")
        elif index >= 1 and (parts[index - 1] in _NAME_AFTER or parts[0] in _NAMES_BELOW):
            template.append("{id}" if part.isdigit() else "{param}")
        elif part.isdigit():
            template.append("{id}")
        elif _WORD.fullmatch(part):
            template.append(part)
        else:
            template.append("{param}")
    return "/" + "/".join(template)


def discord_trace(metrics: Metrics) -> aiohttp.TraceConfig:
    """A TraceConfig for discord.py's `Client(http_trace=...)` that counts every REST call and 429 in `metrics`."""
    routes: set[str] = set()

    async def on_request_end(
        _session: aiohttp.ClientSession, _context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        route = route_template(params.url.path)
        if route not in routes:
            if len(routes) >= MAX_ROUTES:
                route = "other"
            else:
                routes.add(route)
        metrics.discord_call(params.method, route, params.response.status)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace
