"""The service the command line opens keeps echo's replies out of what it sends: storage knows no engine by name,
so this is `open_service`'s wiring, tested through it."""

from __future__ import annotations

from contextlib import aclosing

import pytest

from app.config import SettingsError
from app.conversation.events import FinalReply
from app.conversation.setup import open_service
from app.engines import ECHO
from app.storage import ConversationKey
from tests.fakes.openai_server import FakeChatServer, HttpError, Reply
from tests.helpers import settings_for

KEY = ConversationKey(user_id=7, scope="dm")


async def _say(service, text: str) -> FinalReply:  # type: ignore[no-untyped-def]
    async with aclosing(service.respond(KEY, "Sam", text)) as events:
        return [event async for event in events if isinstance(event, FinalReply)][0]


async def test_an_echo_reply_is_kept_and_shown_but_never_sent_to_a_model(migrated_url: str) -> None:
    async with FakeChatServer(script=[HttpError.server_error()], default=Reply("Hi Sam!")) as brain:
        service = await open_service(
            settings_for(database_url=migrated_url, brain="http", brain_url=brain.base_url, brain_timeout_seconds=3)
        )
        try:
            fallback = await _say(service, "my dog is called Rex")
            answered = await _say(service, "what is my dog called?")
            stored = await service.export(KEY)
        finally:
            await service.close()

    assert fallback.engine == ECHO and answered.engine == "brain"
    assert [message.content for message in stored] == [
        "my dog is called Rex", fallback.text, "what is my dog called?", "Hi Sam!"
    ]
    sent_later = brain.requests[-1].messages
    assert [m["content"] for m in sent_later if m["role"] != "system"] == [
        "my dog is called Rex",
        "what is my dog called?",
    ]


async def test_a_server_picks_among_the_allowed_models_of_the_tiers_configured(migrated_url: str) -> None:
    async with FakeChatServer() as brain:
        brain_settings = {"brain": "http", "brain_url": brain.base_url, "brain_model": "default-model"}
        with pytest.raises(SettingsError, match="ALLOWED_MODELS: huggingface:Qwen/Qwen2.5-7B names the huggingface"):
            await open_service(
                settings_for(database_url=migrated_url, allowed_models="huggingface:Qwen/Qwen2.5-7B", **brain_settings)
            )
        service = await open_service(
            settings_for(database_url=migrated_url, allowed_models="brain:llama3.1:8b", **brain_settings)
        )
        try:
            await service.server_settings.change(7, None, {"model": "brain:llama3.1:8b"}, by=1)
            effective = await service.server_settings.effective(7, 70)
            async with aclosing(service.respond(KEY, "Sam", "hi", model=effective.model.value)) as events:
                _ = [event async for event in events]
        finally:
            await service.close()
    assert brain.requests[-1].body["model"] == "llama3.1:8b"
