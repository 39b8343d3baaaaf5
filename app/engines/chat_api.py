"""OpenAI-style chat completions over HTTP, through huggingface_hub's AsyncInferenceClient.

One class serves Hugging Face's router (no `base_url`), an Inference Endpoint or TGI, and any
OpenAI-compatible server (Ollama, llama.cpp server, vLLM, LM Studio, ...). Every library error is turned into
an `EngineError` with a kind at this boundary; cancellation always propagates.

Credentials inside the URL (`http://user:password@host/v1`, basic auth in front of Ollama) are taken out of it
and sent as the `Authorization: Basic` header they stand for, so the URL that the library puts into its errors
and log lines carries none; messages are redacted as well. The client contacts no host but the configured one.

Error messages (logged by the chain) never carry what a server wrote back: a refusal may quote the user's
message. They say the status and the error's machine-readable fields (`code`, `type`, `error_type`).

Streams ask for the answer's usage (`stream_options.include_usage`, which OpenAI, vLLM, llama.cpp server, Ollama
and TGI take) and yield it as a `TokenUsage` after the text when the server reports it. Some OpenAI-compatible
APIs refuse the field (400 or 422 naming it, Groq's and Mistral's for one): the answer is asked for again
without it, and that server is asked without it from then on.

A reasoning model's thoughts that the server streams apart from the answer (`reasoning_content`, as DeepSeek,
vLLM and llama.cpp server name it, or `reasoning`) are never yielded as text: only how long they lasted, as a
`Reasoned` after the text. Thoughts inside the text (`<think>`) are the chain's to take out.

`with_model` gives the same engine asking for another model of its server (`ServesModels`).
"""

from __future__ import annotations

import base64
import copy
import email.utils
import functools
import json
import logging
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing

import httpx2
import huggingface_hub.constants
from huggingface_hub import (
    AsyncInferenceClient,
    ChatCompletionInputStreamOptions,
    ChatCompletionStreamOutput,
    set_async_client_factory,
)
from huggingface_hub.errors import HfHubHTTPError, TextGenerationError

from app.engines.contract import ChatMessage, EngineError, ErrorKind, Reasoned, TokenUsage
from app.safe_text import redact_url_credentials

log = logging.getLogger(__name__)

# How servers say "the prompt does not fit": vLLM/OpenAI, TGI and HF's router, llama.cpp server, Ollama.
_CONTEXT_TOO_LONG = re.compile(
    r"context[ _-]?(length|window|size)|maximum (context|sequence|input) length|too many (input )?tokens"
    r"|(prompt|input) is too long|must be <= ?\d+",
    re.IGNORECASE,
)
_CAUSE_FIELDS = ("code", "type", "error_type")  # OpenAI and vLLM; TGI
_CAUSE_VALUE = re.compile(r"[\w.:-]{1,64}", re.ASCII)  # an identifier: a field holding a sentence is left out
_NAMES_STREAM_OPTIONS = re.compile(r"stream_options|include_usage", re.IGNORECASE)
_WITH_USAGE = ChatCompletionInputStreamOptions(include_usage=True)


class _Server:
    """What the engine learned about its server; shared with the engine's `with_model` variants, which talk to
    the same server."""

    def __init__(self) -> None:
        self.takes_stream_options = True


class ChatApiEngine:
    def __init__(
        self,
        name: str,
        model: str,
        base_url: str | None,
        api_key: str | None,
        timeout_s: float,
        temperature: float,
        context_window: int,
        sees_images: bool = False,
    ) -> None:
        self.name = name
        self.model = model
        self.context_window = context_window
        self.sees_images = sees_images  # the operator's word (BRAIN_VISION, HF_VISION): the model takes image parts
        self._base_url, self._basic_auth, url_secrets = _without_credentials(base_url)
        self._api_key = api_key
        self._secrets = [secret for secret in (api_key, *url_secrets) if secret]
        self._timeout_s = timeout_s
        self._temperature = temperature
        self._server = _Server()

    async def stream(
        self, messages: Sequence[ChatMessage], max_tokens: int
    ) -> AsyncIterator[str | Reasoned | TokenUsage]:
        # A fresh client per answer: the client keeps every stream in its cleanup stack until it is closed,
        # so a long-lived one grows with each call. Closing it here bounds the stream's lifetime.
        asked_at = time.monotonic()
        held_s = 0.0  # the consumer's time holding text: not the model's
        thought_until: float | None = None
        try:
            async with self._new_client() as client:
                chunks = await self._open_stream(client, list(messages), max_tokens)
                usage = None
                async with aclosing(chunks):
                    async for chunk in chunks:
                        if chunk.choices:
                            delta = chunk.choices[0].delta
                            if _reasoning_of(delta):
                                thought_until = time.monotonic() - held_s
                            if text := delta.content:
                                held_from = time.monotonic()
                                yield text
                                held_s += time.monotonic() - held_from
                        if chunk.usage is not None:  # in the last chunk, or (llama.cpp server) with its text
                            usage = chunk.usage
                if thought_until is not None:
                    yield Reasoned(thought_until - asked_at)
                reported = _token_usage(usage)
                if reported is not None:
                    yield reported
        except Exception as error:  # CancelledError is a BaseException and passes through untouched
            raise self._classify(error) from error

    async def aclose(self) -> None:
        """Nothing to close: each answer owns (and closes) its own client."""

    def with_model(self, model: str) -> ChatApiEngine:
        """This engine asking for `model`: the same name, server, secrets, timeouts and window (`ServesModels`)."""
        if model == self.model:
            return self
        variant = copy.copy(self)  # shares what it learned of the server
        variant.model = model
        return variant

    async def _open_stream(
        self, client: AsyncInferenceClient, messages: list[ChatMessage], max_tokens: int
    ) -> AsyncIterator[ChatCompletionStreamOutput]:
        server = self._server
        asking_usage = server.takes_stream_options
        try:
            return await self._chat_completion(client, messages, max_tokens, asking_usage)
        except HfHubHTTPError as error:
            if not (asking_usage and _refuses_stream_options(error)):
                raise
        if server.takes_stream_options:
            server.takes_stream_options = False
            log.info("engine %s: the server refuses stream_options; its answers' usage will not be asked", self.name)
        return await self._chat_completion(client, messages, max_tokens, asking_usage=False)

    async def _chat_completion(
        self, client: AsyncInferenceClient, messages: list[ChatMessage], max_tokens: int, asking_usage: bool
    ) -> AsyncIterator[ChatCompletionStreamOutput]:
        return await client.chat_completion(
            messages=messages,  # type: ignore[arg-type]  # ChatMessage is the dict the client takes
            model=self.model,
            max_tokens=max_tokens,
            temperature=self._temperature,
            stream=True,
            stream_options=_WITH_USAGE if asking_usage else None,
        )

    def _new_client(self) -> AsyncInferenceClient:
        _share_tls_context_between_sessions()
        _no_calls_to_the_hub()
        headers: dict[str, str | None] = {}
        if self._basic_auth is not None:
            headers["authorization"] = self._basic_auth  # what the URL's credentials meant, as HTTP clients read them
        elif self._base_url is not None and self._api_key is None:
            # Without this, huggingface_hub sends the locally stored HF token to whatever server base_url names.
            headers["authorization"] = None
        return AsyncInferenceClient(
            base_url=self._base_url,
            api_key=self._api_key,
            timeout=self._timeout_s,
            headers=headers,  # type: ignore[arg-type]  # a None value removes the header
        )

    def _classify(self, error: Exception) -> EngineError:
        if isinstance(error, HfHubHTTPError):
            return self._classify_http(error)
        if isinstance(error, TimeoutError | httpx2.TimeoutException):
            return self._error(ErrorKind.TIMEOUT, f"no answer within the read timeout ({type(error).__name__})")
        if isinstance(error, TextGenerationError):  # its type says what TGI's `error_type` said
            kind = ErrorKind.CONTEXT_TOO_LONG if _CONTEXT_TOO_LONG.search(str(error)) else ErrorKind.UNAVAILABLE
            return self._error(kind, f"error event in the stream ({type(error).__name__})")
        if isinstance(error, json.JSONDecodeError):
            return self._error(ErrorKind.UNAVAILABLE, f"malformed JSON from the server: {error.msg}")
        if isinstance(error, httpx2.TransportError | OSError):
            return self._error(ErrorKind.UNAVAILABLE, f"connection failed ({type(error).__name__}): {error}")
        return self._error(ErrorKind.UNAVAILABLE, f"unexpected {type(error).__name__}")  # its text may quote a chunk

    def _classify_http(self, error: HfHubHTTPError) -> EngineError:
        status = error.response.status_code
        server_text = _server_text(error)  # for classifying only
        message = ", ".join([f"HTTP {status}", *_causes(server_text)])
        retry_after = _parse_retry_after(error.response.headers.get("Retry-After"))
        if status in (401, 403):
            return self._error(ErrorKind.AUTH, f"{message} (check the API key and its permissions)")
        if status == 404:  # a wrong URL or model name: every request fails alike
            return self._error(ErrorKind.UNAVAILABLE, f"{message} (check the URL and the model name)")
        if status == 408:
            return self._error(ErrorKind.TIMEOUT, message)
        if status == 429:
            return self._error(ErrorKind.RATE_LIMITED, message, retry_after)
        if status == 413 or (status in (400, 422) and _CONTEXT_TOO_LONG.search(server_text)):
            return self._error(ErrorKind.CONTEXT_TOO_LONG, message)
        if 400 <= status < 500:
            return self._error(ErrorKind.BAD_REQUEST, message)
        return self._error(ErrorKind.UNAVAILABLE, message, retry_after)

    def _error(self, kind: ErrorKind, message: str, retry_after: float | None = None) -> EngineError:
        message = redact_url_credentials(message)
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return EngineError(kind, message, retry_after)


def _refuses_stream_options(error: HfHubHTTPError) -> bool:
    """A validation error about `stream_options` itself, as a server that does not know the field answers."""
    return error.response.status_code in (400, 422) and bool(_NAMES_STREAM_OPTIONS.search(_server_text(error)))


def _reasoning_of(delta: object) -> str | None:
    """The thoughts a delta carries apart from its text: `reasoning` (a field of huggingface_hub's delta) or
    `reasoning_content` (which the library keeps as an extra key of the delta, a dict)."""
    reasoning = getattr(delta, "reasoning", None)
    if not reasoning and isinstance(delta, dict):
        reasoning = delta.get("reasoning_content")
    return reasoning if isinstance(reasoning, str) else None


def _token_usage(usage: object) -> TokenUsage | None:
    """The server's usage report as a `TokenUsage`; None when there is none, or it lacks a count."""
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    if type(prompt) is not int or type(completion) is not int or prompt < 0 or completion < 0:
        return None
    return TokenUsage(prompt, completion)


def _without_credentials(base_url: str | None) -> tuple[str | None, str | None, list[str]]:
    """The URL without its `user:password@`, the basic-auth header those stand for, and the secret among them
    (as written and decoded) to scrub from messages."""
    if base_url is None:
        return None, None, []
    parts = urllib.parse.urlsplit(base_url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return base_url, None, []
    user, _, password = userinfo.partition(":")
    credentials = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
    header = "Basic " + base64.b64encode(credentials.encode()).decode()
    secret = password or user  # a key alone in the URL is its user part
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), header, [secret, urllib.parse.unquote(secret)]


@functools.cache
def _no_calls_to_the_hub() -> None:
    """huggingface_hub builds its User-Agent with telemetry: on the first request of a process it fetches a
    list of "agent harnesses" from huggingface.co, synchronously — inside the event loop, up to 3 s, whatever
    server the request is for, even with the HF tier off. Telemetry off (HF_HUB_DISABLE_TELEMETRY, read at the
    library's import, so set on its constants) skips that call; requests are otherwise the same."""
    huggingface_hub.constants.HF_HUB_DISABLE_TELEMETRY = True


@functools.cache
def _share_tls_context_between_sessions() -> None:
    """Every answer opens its own HTTP session, and each new session loads the CA bundle again: about 17 ms
    of blocked event loop per answer. Sessions built here share one TLS context instead (huggingface_hub's
    public factory hook; its own request/response hooks are kept)."""
    try:
        from huggingface_hub.utils._http import (
            async_hf_request_event_hook,
            async_hf_response_event_hook,
        )
    except ImportError:  # a future huggingface_hub moved them: keep its default sessions
        return
    tls = httpx2.create_ssl_context()

    def session() -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            event_hooks={"request": [async_hf_request_event_hook], "response": [async_hf_response_event_hook]},
            follow_redirects=True,
            timeout=None,
            verify=tls,
        )

    set_async_client_factory(session)


def _server_text(error: HfHubHTTPError) -> str:
    try:
        body = error.response.text
    except httpx2.ResponseNotRead:
        body = ""
    return body or error.server_message or ""


def _causes(server_text: str) -> list[str]:
    """The machine-readable fields of a JSON error body, at its top or in its `error` object, as "name value"."""
    try:
        body = json.loads(server_text)
    except ValueError:
        return []
    places = [body, body.get("error")] if isinstance(body, dict) else []
    return [
        f"{name} {place[name]}"
        for place in places if isinstance(place, dict)
        for name in _CAUSE_FIELDS
        if isinstance(place.get(name), str | int) and _CAUSE_VALUE.fullmatch(str(place[name]))
    ]


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())

