"""ChatApiEngine: the real huggingface_hub client against a fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.engines import ChatMessage, EngineError, ErrorKind, TokenUsage
from app.engines.chain import EngineChain, Tier
from app.engines.echo import EchoEngine
from tests import workers
from tests.fakes.openai_server import (
    FakeChatServer,
    Hang,
    HttpError,
    MalformedJson,
    Reply,
    StreamErrorEvent,
)
from tests.helpers import MakeApiEngine, child_environment

HISTORY: list[ChatMessage] = [
    {"role": "system", "content": "You are Kor'tana."},
    {"role": "user", "content": "Hi! I'm Sam."},
    {"role": "assistant", "content": "Hello Sam 👋"},
    {"role": "user", "content": "What is my name?"},
]


async def answer(engine, messages: list[ChatMessage] = HISTORY, max_tokens: int = 50) -> list[str]:
    """The answer's text chunks (its usage report, if any, left out)."""
    return [chunk for chunk in await items_of(engine, messages, max_tokens) if isinstance(chunk, str)]


async def items_of(engine, messages: list[ChatMessage] = HISTORY, max_tokens: int = 50) -> list[str | TokenUsage]:
    return [item async for item in engine.stream(messages, max_tokens)]


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
        (HttpError(404, {"error": "model not found"}), ErrorKind.UNAVAILABLE, None),
        (HttpError(408, "Request Timeout"), ErrorKind.TIMEOUT, None),
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


# -- what a server writes back never reaches a log line: it may quote the user's message -----------------------

USERS_WORDS = "my diary says I adore Zanzibar"


@pytest.mark.parametrize(
    ("behaviour", "logged_cause"),
    [
        (
            HttpError(400, {"error": {"message": f"Flagged: '{USERS_WORDS}'", "type": "invalid_request_error",
                                      "code": "content_policy_violation"}}),
            "HTTP 400, code content_policy_violation, type invalid_request_error",
        ),
        (
            HttpError(422, {"error": f"Input validation error: {USERS_WORDS}", "error_type": "validation"}),
            "HTTP 422, error_type validation",
        ),
        (HttpError(400, f"cannot read {USERS_WORDS}"), "HTTP 400"),
        (HttpError(500, {"error": {"message": USERS_WORDS, "code": USERS_WORDS}}), "HTTP 500"),
        (
            StreamErrorEvent(text_before="Sure, ", message=f"failed on {USERS_WORDS}", error_type="generation"),
            "error event in the stream (GenerationError)",
        ),
    ],
    ids=["openai-400", "tgi-422", "text-400", "sentence-in-code-500", "error-event"],
)
async def test_a_failure_is_logged_with_its_status_and_codes_but_never_the_servers_words(
    brain_server: FakeChatServer,
    make_api_engine: MakeApiEngine,
    caplog: pytest.LogCaptureFixture,
    behaviour: object,
    logged_cause: str,
) -> None:
    brain_server.script = [behaviour]  # type: ignore[list-item]
    chain = EngineChain([Tier(make_api_engine(brain_server.base_url), 2.0)], EchoEngine(), max_tokens=50)
    messages: list[ChatMessage] = [{"role": "user", "content": USERS_WORDS}]

    with caplog.at_level(logging.DEBUG):
        events = [event async for event in chain.stream(lambda budget: messages, 3000)]

    assert "echo" in repr(events)
    [line] = [record.getMessage() for record in caplog.records if record.name == "app.engines.chain"]
    assert line.endswith(f"): {logged_cause}"), line
    assert "Zanzibar" not in caplog.text + repr(chain.status())


# -- credentials inside URLs are secrets ---------------------------------------------------------------------


def with_credentials(base_url: str, userinfo: str) -> str:
    return base_url.replace("http://", f"http://{userinfo}@", 1)


@pytest.mark.parametrize(
    "behaviour",
    [HttpError(500, ""), HttpError(401, ""), HttpError(404, ""), Hang(), "refused"],
    ids=["500-empty-body", "401-empty-body", "404-empty-body", "read-timeout", "refused"],
)
@pytest.mark.parametrize("userinfo", ["kortana:s3cret-pw", "sk-key-in-url"], ids=["user-password", "key-as-user"])
async def test_credentials_in_the_url_reach_no_error_log_line_or_status(
    brain_server: FakeChatServer,
    refused_url: str,
    make_api_engine: MakeApiEngine,
    caplog: pytest.LogCaptureFixture,
    behaviour: object,
    userinfo: str,
) -> None:
    secret = userinfo.rpartition(":")[2]
    base_url = refused_url if behaviour == "refused" else brain_server.base_url
    if behaviour != "refused":
        brain_server.default = behaviour  # type: ignore[assignment]
    engine = make_api_engine(with_credentials(base_url, userinfo), timeout_s=0.3)
    chain = EngineChain([Tier(engine, 2.0)], EchoEngine(), max_tokens=50, failure_threshold=1)

    with caplog.at_level(logging.DEBUG):
        error = await failure_of(engine)
        events = [event async for event in chain.stream(lambda budget: HISTORY, 3000)]

    assert "echo" in repr(events)
    assert secret not in str(error) + repr(error.__cause__)
    assert secret not in caplog.text
    assert secret not in repr(chain.status())
    assert caplog.records  # the failure was logged, without the secret


@pytest.mark.parametrize(
    ("userinfo", "credentials"),
    [("kortana:s3cret-pw", "kortana:s3cret-pw"), ("sk-key-in-url", "sk-key-in-url:"), ("k%40rt:p%3Aw", "k@rt:p:w")],
)
async def test_credentials_in_the_url_are_sent_as_basic_auth(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine, userinfo: str, credentials: str
) -> None:
    engine = make_api_engine(with_credentials(brain_server.base_url, userinfo), api_key="sk-ignored-for-basic")

    assert "".join(await answer(engine)) == "Hello from the brain!"

    [request] = brain_server.requests
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(credentials.encode()).decode()
    assert request.path == "/v1/chat/completions"


# -- nothing but the configured server is contacted ------------------------------------------------------------


def test_a_first_request_contacts_no_host_but_the_configured_one(tmp_path: Path) -> None:
    """A fresh process (the library's one-time work happens on its first request), with an empty hub cache."""
    env = child_environment("HF_HUB_*", HF_HOME=str(tmp_path / "hf-home"))

    finished = subprocess.run(
        [sys.executable, "-m", "tests.workers.first_request"],
        cwd=workers.REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert finished.returncode == 0, finished.stderr
    result = json.loads(finished.stdout.splitlines()[-1])
    assert result["text"] == "Hello from the fake server!"
    assert {host for _, host in result["contacted"]} == {"127.0.0.1"}
