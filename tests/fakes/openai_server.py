"""A scriptable OpenAI-compatible chat-completions server for tests.

It stands in for any outside chat API (Hugging Face's router, Ollama, vLLM, ...). It listens on 127.0.0.1 at
an ephemeral port, answers `POST <any prefix>/chat/completions` with JSON or SSE (when the request asks for
`"stream": true`), and records every request so tests can assert what the engine sent.

Each request takes the next behaviour from the script; when the script is empty it uses `default`. Set
`script` to a list (consumed in order) or to a function of the request body (called for every request):

    async with FakeChatServer() as server:
        server.script = [HttpError.rate_limited(retry_after=1), Reply("Hello there", chunks=3)]
        engine = ChatApiEngine(..., base_url=server.base_url, ...)
        ...
        assert server.requests[0].messages[0]["role"] == "system"

A streamed `Reply` ends with a usage chunk (empty `choices`) when the request asks for it
(`stream_options.include_usage`), as OpenAI and vLLM send it; a `Reply` can also send its usage unasked, in its
last chunk with the finish reason (llama-cpp-python's server), or send usage of its own. A `Reply` with
`reasoning` streams it first, in deltas of their own under `reasoning_field` (`reasoning_content`, as DeepSeek
and vLLM send a reasoning model's thoughts, or `reasoning`); a reasoning model that thinks inside its text is a
`Reply` whose text holds `<think>...</think>`. With
`refuses_stream_options` the server answers a request carrying `stream_options` with a 422 naming the field, as
an OpenAI-compatible API that forbids unknown fields does (Mistral's; Groq's says it with a 400).

Behaviours: `Reply` (text in N chunks, optional delay per chunk, optional stall after some chunks),
`HttpError` (any status, headers and body, optionally after a delay, with constructors for the usual ones),
`Hang` (never answers), `MalformedJson`, `StreamErrorEvent` (an error event inside the stream),
`LoneSurrogates` (chunks carrying halves of UTF-16 surrogate pairs as JSON escapes). `refused_base_url()`
gives a URL on which connections are refused.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """Answer `text`, streamed in `chunks` pieces with `chunk_delay_s` before each one.

    `stall_after_chunks` sends that many pieces and then goes silent forever, keeping the connection open.
    A request without `"stream": true` gets the whole text as one JSON answer after the summed delays (no stall).
    `usage` replaces the counted usage (words stand in for tokens); `usage_with_finish` sends it, asked or not, in
    the chunk with the finish reason instead of a chunk of its own. `reasoning` goes before the text, in
    `reasoning_chunks` deltas that carry it under `reasoning_field` and no content.
    """

    text: str = "Hello from the fake server!"
    chunks: int = 1
    chunk_delay_s: float = 0.0
    stall_after_chunks: int | None = None
    usage: dict[str, Any] | None = None
    usage_with_finish: bool = False
    reasoning: str = ""
    reasoning_chunks: int = 1
    reasoning_field: str = "reasoning_content"

    def pieces(self) -> list[str]:
        return _pieces(self.text, self.chunks)

    def reasoning_pieces(self) -> list[str]:
        return _pieces(self.reasoning, self.reasoning_chunks) if self.reasoning else []


@dataclass(frozen=True)
class HttpError:
    """Answer with `status`, `headers` and `body` (a dict is sent as JSON)."""

    status: int
    body: dict[str, Any] | str = field(default_factory=lambda: {"error": "fake failure"})
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the answer, as a server that works a while and then gives up

    @classmethod
    def server_error(cls) -> HttpError:
        return cls(500, {"error": "internal server error"})

    @classmethod
    def unavailable(cls, retry_after: float | None = None) -> HttpError:
        return cls(503, {"error": "model is loading"}, _retry_after_header(retry_after))

    @classmethod
    def rate_limited(cls, retry_after: float | None = None) -> HttpError:
        return cls(429, {"error": "rate limit reached"}, _retry_after_header(retry_after))

    @classmethod
    def unauthorized(cls) -> HttpError:
        return cls(401, {"error": "Invalid credentials in Authorization header"})

    @classmethod
    def unknown_field(cls, *location: str) -> HttpError:
        """A 422 validation error of a server that forbids fields it does not know (pydantic's words)."""
        return cls(
            422,
            {
                "object": "error",
                "message": {
                    "detail": [
                        {
                            "type": "extra_forbidden",
                            "loc": ["body", *location],
                            "msg": "Extra inputs are not permitted",
                            "input": True,
                        }
                    ]
                },
                "type": "invalid_request_error",
            },
        )

    @classmethod
    def context_too_long(cls) -> HttpError:
        return cls(
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 4096 tokens. "
                    "However, you requested 5000 tokens. Please reduce the length of the messages.",
                    "type": "invalid_request_error",
                    "code": "context_length_exceeded",
                }
            },
        )


@dataclass(frozen=True)
class Hang:
    """Accept the request and never answer (until the server stops)."""


@dataclass(frozen=True)
class MalformedJson:
    """Answer 200 with a body (or, when streaming, an event) that is not JSON."""


@dataclass(frozen=True)
class StreamErrorEvent:
    """Stream `text_before` and then an error event, as TGI sends one when generation fails.

    A request without `"stream": true` gets the error as a 422 JSON answer instead.
    """

    text_before: str = ""
    message: str = "Input validation error: the model failed"
    error_type: str = "validation"


@dataclass(frozen=True)
class LoneSurrogates:
    """Stream `pieces` as they are, one chunk each. `json.dumps` writes a surrogate half as its escape
    (`"\\ud83d"`), valid JSON that decodes to a string no UTF-8 codec accepts: by default an emoji split
    across two chunks, then a low surrogate with no partner. The text a user should see is `shown`.

    A request without `"stream": true` gets the pieces joined in one JSON answer.
    """

    pieces: tuple[str, ...] = ("ab\ud83d", "\ude00cd", " lone \udc00.")
    shown: str = "ab\U0001f600cd lone \ufffd."


Behaviour = Reply | HttpError | Hang | MalformedJson | StreamErrorEvent | LoneSurrogates
Script = list[Behaviour] | Callable[[dict[str, Any]], Behaviour]


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])


class FakeChatServer:
    """The server; use it as an async context manager (`async with FakeChatServer() as server`)."""

    def __init__(
        self, script: Script | None = None, default: Behaviour = Reply(), *, refuses_stream_options: bool = False
    ) -> None:
        self.script: Script = script if script is not None else []
        self.default = default
        self.refuses_stream_options = refuses_stream_options
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0  # requests being answered now (a hang or a stall lasts until the server stops)
        self.max_in_flight = 0
        self.port: int | None = None
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (clients append `/chat/completions`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._stopping.set()  # releases hanging and stalled handlers so shutdown is immediate
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeChatServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _next_behaviour(self, body: dict[str, Any]) -> Behaviour:
        if self.refuses_stream_options and "stream_options" in body:
            return HttpError.unknown_field("stream_options", "include_usage")
        if callable(self.script):
            return self.script(body)
        return self.script.pop(0) if self.script else self.default

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not request.path.endswith("/chat/completions"):
            raise web.HTTPNotFound()
        body = await request.json()
        self.requests.append(RecordedRequest(request.path, dict(request.headers), body))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, self._next_behaviour(body), body)
        finally:
            self.in_flight -= 1

    async def _answer(
        self, request: web.Request, behaviour: Behaviour, body: dict[str, Any]
    ) -> web.StreamResponse:
        model = body.get("model") or "fake-model"

        if isinstance(behaviour, HttpError):
            await asyncio.sleep(behaviour.delay_s)
            if isinstance(behaviour.body, str):
                return web.Response(status=behaviour.status, text=behaviour.body, headers=behaviour.headers)
            return web.json_response(behaviour.body, status=behaviour.status, headers=behaviour.headers)
        if isinstance(behaviour, Hang):
            await self._stopping.wait()
            raise web.HTTPServiceUnavailable()
        if not body.get("stream"):
            return await self._answer_json(behaviour, model, body)
        return await self._answer_stream(request, behaviour, model, body)

    async def _answer_json(self, behaviour: Behaviour, model: str, body: dict[str, Any]) -> web.Response:
        if isinstance(behaviour, MalformedJson):
            return web.Response(text='{"choices": [', content_type="application/json")
        if isinstance(behaviour, StreamErrorEvent):
            return web.json_response({"error": behaviour.message, "error_type": behaviour.error_type}, status=422)
        if isinstance(behaviour, LoneSurrogates):
            behaviour = Reply("".join(behaviour.pieces))
        assert isinstance(behaviour, Reply)
        for _ in behaviour.pieces():
            await asyncio.sleep(behaviour.chunk_delay_s)
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": behaviour.text,
                            **({behaviour.reasoning_field: behaviour.reasoning} if behaviour.reasoning else {}),
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": behaviour.usage or _usage(body, behaviour.text),
            }
        )

    async def _answer_stream(
        self, request: web.Request, behaviour: Behaviour, model: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)

        async def send(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await response.write(f"data: {data}\n\n".encode())

        if isinstance(behaviour, MalformedJson):
            await send('{"choices": [')
        elif isinstance(behaviour, StreamErrorEvent):
            if behaviour.text_before:
                await send(_chunk(model, {"role": "assistant", "content": behaviour.text_before}))
            await send({"error": behaviour.message, "error_type": behaviour.error_type})
        elif isinstance(behaviour, LoneSurrogates):
            for piece in behaviour.pieces:
                await send(_chunk(model, {"role": "assistant", "content": piece}))
            await send(_chunk(model, {}, finish_reason="stop"))
            await send("[DONE]")
        else:
            assert isinstance(behaviour, Reply)
            for thought in behaviour.reasoning_pieces():
                await asyncio.sleep(behaviour.chunk_delay_s)
                await send(_chunk(model, {"role": "assistant", "content": None, behaviour.reasoning_field: thought}))
            for index, piece in enumerate(behaviour.pieces()):
                if index == behaviour.stall_after_chunks:
                    await self._stopping.wait()
                    return response
                await asyncio.sleep(behaviour.chunk_delay_s)
                await send(_chunk(model, {"role": "assistant", "content": piece}))
            usage = behaviour.usage or _usage(body, behaviour.text)
            if behaviour.usage_with_finish:
                await send({**_chunk(model, {}, finish_reason="stop"), "usage": usage})
            else:
                await send(_chunk(model, {}, finish_reason="stop"))
                if (body.get("stream_options") or {}).get("include_usage"):
                    await send({**_chunk(model, {}), "choices": [], "usage": usage})
            await send("[DONE]")
        await response.write_eof()
        return response


@contextmanager
def refused_base_url() -> Iterator[str]:
    """A base URL on which every connection is refused.

    The port stays bound (without listening) for the duration, so nothing else can take it meanwhile.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def _pieces(text: str, chunks: int) -> list[str]:
    count = max(1, min(chunks, len(text)))
    size, extra = divmod(len(text), count)
    pieces, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _retry_after_header(retry_after: float | None) -> dict[str, str]:
    return {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _usage(body: dict[str, Any], answer: str) -> dict[str, int]:
    # Real tokenizing is not the fake's business: words stand in for tokens.
    prompt = sum(len(str(message.get("content", "")).split()) for message in body.get("messages", []))
    completion = len(answer.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
