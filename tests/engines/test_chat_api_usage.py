"""ChatApiEngine's usage reports and model choice: the real huggingface_hub client against the fake server."""

from __future__ import annotations

import pytest

from app.engines import ChatMessage, EngineError, ErrorKind, ServesModels, TokenUsage
from tests.fakes.openai_server import FakeChatServer, HttpError, Reply
from tests.helpers import MakeApiEngine

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are Kor'tana."},  # 3 words: the fake counts words as tokens
    {"role": "user", "content": "Say something kind."},  # 3
]


async def items_of(engine, messages: list[ChatMessage] = MESSAGES) -> list[str | TokenUsage]:
    return [item async for item in engine.stream(messages, 50)]


async def test_the_servers_usage_comes_after_the_text_and_is_asked_for(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [Reply("You are doing well today.", chunks=3)]

    *text, usage = await items_of(make_api_engine(brain_server.base_url))

    assert "".join(text) == "You are doing well today." and len(text) == 3
    assert usage == TokenUsage(prompt_tokens=6, completion_tokens=5) and usage.total == 11
    [request] = brain_server.requests
    assert request.body["stream_options"] == {"include_usage": True}


async def test_usage_sent_with_the_finish_reason_unasked_is_taken_too(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [Reply("Hi!", usage={"prompt_tokens": 40, "completion_tokens": 2}, usage_with_finish=True)]

    assert await items_of(make_api_engine(brain_server.base_url)) == ["Hi!", TokenUsage(40, 2)]


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 9},
        {"prompt_tokens": 9, "completion_tokens": -1},
        {"prompt_tokens": 9, "completion_tokens": 1.5},
    ],
    ids=["no-completion-count", "negative", "not-whole"],
)
async def test_a_usage_report_without_two_whole_counts_is_left_out(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine, usage: dict
) -> None:
    brain_server.script = [Reply("Hi!", usage=usage)]

    assert await items_of(make_api_engine(brain_server.base_url)) == ["Hi!"]


@pytest.mark.parametrize(
    "refusal",
    [
        HttpError.unknown_field("stream_options", "include_usage"),  # Mistral's API, pydantic with extra="forbid"
        HttpError(400, {"error": {"message": "property 'stream_options' is unsupported, did you mean 'stream'?",
                                  "type": "invalid_request_error"}}),  # Groq's
    ],
    ids=["422-extra-forbidden", "400-unsupported-property"],
)
async def test_a_server_that_refuses_stream_options_is_asked_again_without_and_never_with_them_again(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine, refusal: HttpError
) -> None:
    brain_server.script = lambda body: refusal if "stream_options" in body else Reply("Hello there!", chunks=2)
    engine = make_api_engine(brain_server.base_url)

    assert await items_of(engine) == ["Hello ", "there!"]
    assert await items_of(engine) == ["Hello ", "there!"]
    assert await items_of(engine.with_model("other/model")) == ["Hello ", "there!"]  # the same server

    asked = ["stream_options" in request.body for request in brain_server.requests]
    assert asked == [True, False, False, False]


async def test_another_bad_request_is_not_retried_and_usage_is_still_asked_for_next_time(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [
        HttpError(400, {"error": {"message": "Your message was flagged by the content filter", "code": "flagged"}}),
        Reply("Fine."),
    ]
    engine = make_api_engine(brain_server.base_url)

    with pytest.raises(EngineError) as failure:
        await items_of(engine)
    assert failure.value.kind is ErrorKind.BAD_REQUEST
    assert await items_of(engine) == ["Fine.", TokenUsage(6, 1)]
    assert ["stream_options" in request.body for request in brain_server.requests] == [True, True]


async def test_a_refusal_on_the_retry_without_stream_options_is_the_answers_failure(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [HttpError.unknown_field("stream_options"), HttpError.rate_limited(retry_after=7)]

    with pytest.raises(EngineError) as failure:
        await items_of(make_api_engine(brain_server.base_url))

    assert (failure.value.kind, failure.value.retry_after) == (ErrorKind.RATE_LIMITED, 7)
    assert len(brain_server.requests) == 2


async def test_with_model_is_the_same_engine_asking_for_another_model(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    engine = make_api_engine(brain_server.base_url, api_key="sk-brain-key", context_window=1234)
    assert isinstance(engine, ServesModels)

    chosen = engine.with_model("llama3.1:8b")
    await items_of(chosen)
    await items_of(engine)

    assert (chosen.name, chosen.context_window, chosen.model) == ("brain", 1234, "llama3.1:8b")
    assert engine.model == "fake/model", "the engine itself keeps its default"
    assert engine.with_model("fake/model") is engine
    first, second = brain_server.requests
    assert (first.body["model"], second.body["model"]) == ("llama3.1:8b", "fake/model")
    assert first.headers["Authorization"] == second.headers["Authorization"] == "Bearer sk-brain-key"
