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
_IDS = re.compile(r"/\d+(?=/|$)")
# After the ids, the API's prefix goes, then the segments that hold a token or a name someone chose, then anything
# left that is not one of Discord's fixed words (lower case, no digits) or a placeholder.
_STEPS = (
    (re.compile(r"^/api(?:/v\{id\}|/v\d+)?"), ""),
    (re.compile(r"(/(?:webhooks|interactions)/\{id\})/[^/]+"), r"\1/{token}"),
    (re.compile(r"/reactions/[^/]+"), "/reactions/{param}"),
    (re.compile(r"^(/(?:ephemeral-)?attachments(?:/\{id\})*)/.*$"), r"\1/{param}"),
    (re.compile(r"/(?!(?:[a-z][a-z\-_]{0,31}|@me|@original|\{id\}|\{token\}|\{param\})(?:/|$))[^/]+"), "/{param}"),
)
_TOKEN_HOLDERS = ("/webhooks/", "/interactions/")
_known: dict[str, str] = {}  # path with its ids out -> template: most calls are of a few shapes (~4 µs saved a call)
MAX_KNOWN = 512


def route_template(path: str) -> str:
    shape = _IDS.sub("/{id}", path)
    template = _known.get(shape)
    if template is not None:
        return template
    template = shape
    for pattern, replacement in _STEPS:
        template = pattern.sub(replacement, template)
    template = template or "/"
    if len(_known) < MAX_KNOWN and not any(holder in shape for holder in _TOKEN_HOLDERS):  # never keep a token
        _known[shape] = template
    return template


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
