"""ChatApiEngine: the real huggingface_hub client against a fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from app.engines.base import ChatMessage, EngineError, ErrorKind
from tests.engines.conftest import MakeApiEngine
from tests.fakes.openai_server import (
    FakeChatServer,
    Hang,
    HttpError,
    MalformedJson,
    Reply,
    StreamErrorEvent,
)

HISTORY: list[ChatMessage] = [
    {"role": "system", "content": "You are Kor'tana."},
    {"role": "user", "content": "Hi! I'm Sam."},
    {"role": "assistant", "content": "Hello Sam 👋"},
    {"role": "user", "content": "What is my name?"},
]


async def answer(engine, messages: list[ChatMessage] = HISTORY, max_tokens: int = 50) -> list[str]:
    return [chunk async for chunk in engine.stream(messages, max_tokens)]


async def failure_of(engine) -> EngineError:
    with pytest.raises(EngineError) as caught:
        await answer(engine)
    return caught.value


async def test_streams_the_answer_and_sends_the_history_in_order(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [Reply("Your name is Sam.", chunks=4)]
    engine = make_api_engine(brain_server.base_url, temperature=0.3)

    chunks = await answer(engine, max_tokens=123)

    assert len(chunks) == 4
    assert "".join(chunks) == "Your name is Sam."
    [request] = brain_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.messages == HISTORY
    assert request.body["model"] == "fake/model"
    assert request.body["max_tokens"] == 123
    assert request.body["temperature"] == 0.3
    assert request.body["stream"] is True


async def test_sends_its_api_key_and_never_the_local_hf_token_to_another_server(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_local_secret_token")

    await answer(make_api_engine(brain_server.base_url, api_key=None))
    await answer(make_api_engine(brain_server.base_url, api_key="sk-brain-key"))

    without_key, with_key = brain_server.requests
    assert "hf_local_secret_token" not in str(without_key.headers)
    assert with_key.headers["Authorization"] == "Bearer sk-brain-key"


async def test_accepts_any_base_path(brain_server: FakeChatServer, make_api_engine: MakeApiEngine) -> None:
    base_url = brain_server.base_url.removesuffix("/v1") + "/proxy/openai/v1"

    assert "".join(await answer(make_api_engine(base_url))) == "Hello from the brain!"
    assert brain_server.requests[0].path == "/proxy/openai/v1/chat/completions"


@pytest.mark.parametrize(
    ("behaviour", "kind", "retry_after"),
    [
        (HttpError.server_error(), ErrorKind.UNAVAILABLE, None),
        (HttpError.unavailable(retry_after=7), ErrorKind.UNAVAILABLE, 7.0),
        (HttpError.rate_limited(retry_after=1.5), ErrorKind.RATE_LIMITED, 1.5),
        (HttpError.rate_limited(), ErrorKind.RATE_LIMITED, None),
        (HttpError.unauthorized(), ErrorKind.AUTH, None),
        (HttpError(403, {"error": "no access to this model"}), ErrorKind.AUTH, None),
        (HttpError.context_too_long(), ErrorKind.CONTEXT_TOO_LONG, None),
        (HttpError(413, "Payload Too Large"), ErrorKind.CONTEXT_TOO_LONG, None),
        (
            HttpError(422, {"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4"}),
            ErrorKind.CONTEXT_TOO_LONG,
            None,
        ),
        (HttpError(400, {"error": "temperature must be positive"}), ErrorKind.BAD_REQUEST, None),
        (HttpError(404, {"error": "model not found"}), ErrorKind.BAD_REQUEST, None),
        (MalformedJson(), ErrorKind.UNAVAILABLE, None),
        (StreamErrorEvent(), ErrorKind.UNAVAILABLE, None),
        (StreamErrorEvent(message="Input is too long for this model"), ErrorKind.CONTEXT_TOO_LONG, None),
    ],
    ids=lambda value: getattr(value, "status", None) or type(value).__name__,
)
async def test_classifies_failures(
    brain_server: FakeChatServer,
    make_api_engine: MakeApiEngine,
    behaviour,
    kind: ErrorKind,
    retry_after: float | None,
) -> None:
    brain_server.script = [behaviour]

    error = await failure_of(make_api_engine(brain_server.base_url))

    assert error.kind is kind
    assert error.retry_after == retry_after


async def test_retry_after_may_be_an_http_date(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    brain_server.script = [HttpError(503, {"error": "overloaded"}, {"Retry-After": in_a_minute})]

    error = await failure_of(make_api_engine(brain_server.base_url))

    assert error.retry_after is not None and 55 < error.retry_after <= 60


async def test_the_api_key_never_appears_in_an_error(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [HttpError(401, {"error": "invalid key sk-very-secret"})]

    error = await failure_of(make_api_engine(brain_server.base_url, api_key="sk-very-secret"))

    assert error.kind is ErrorKind.AUTH
    assert "sk-very-secret" not in str(error)
    assert "401" in str(error)


async def test_connection_refused_is_unavailable(refused_url: str, make_api_engine: MakeApiEngine) -> None:
    error = await failure_of(make_api_engine(refused_url))

    assert error.kind is ErrorKind.UNAVAILABLE


async def test_a_server_that_never_answers_times_out(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [Hang()]

    error = await failure_of(make_api_engine(brain_server.base_url, timeout_s=0.2))

    assert error.kind is ErrorKind.TIMEOUT


async def test_a_stall_in_the_middle_of_a_stream_fails_after_the_partial_text(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [Reply("one two three four", chunks=4, stall_after_chunks=2)]  # "one t" "wo th" ...
    chunks: list[str] = []

    with pytest.raises(EngineError) as caught:
        async for chunk in make_api_engine(brain_server.base_url, timeout_s=0.2).stream(HISTORY, 50):
            chunks.append(chunk)

    assert caught.value.kind is ErrorKind.TIMEOUT
    assert "".join(chunks) == "one two th"


async def test_cancellation_propagates_and_the_engine_stays_usable(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [Reply("a slow answer", chunks=5, chunk_delay_s=0.2)]
    engine = make_api_engine(brain_server.base_url)
    first_chunk = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.stream(HISTORY, 50):
            first_chunk.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_chunk.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert "".join(await answer(engine)) == "Hello from the brain!"
