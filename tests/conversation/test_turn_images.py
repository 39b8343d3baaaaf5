"""A turn's images in the conversation service, on real, migrated databases: stored by reference with IMAGE_TOKENS
each in the message's count (an edit keeps them), sent with their own turn only; an image alone is a message."""

from __future__ import annotations

from contextlib import aclosing

from app.bench.instant_engine import InstantEngine
from app.conversation.service import ConversationService
from app.conversation.summary import summary_request
from app.conversation.tokens import EstimatedTokens
from app.conversation.turn_images import DEFAULT_IMAGE_TOKENS, TurnImage
from app.conversation.window import defuse_chat_syntax
from app.storage import ConversationKey, StoredImage, StoredMessage

ALICE = ConversationKey(user_id=1, scope="guild-1")
CAT = TurnImage("cat.png", 48_213, "image/png", "https://cdn.example/1/cat.png", inline="data:image/png;base64,AAAA")
NOTE = "[the user attached an image: cat.png, 48 kB]"


async def turn(service: ConversationService, text: str, **kwargs) -> list:
    async with aclosing(service.respond(ALICE, "Alice", text, **kwargs)) as events:
        return [event async for event in events]


async def test_images_are_stored_by_reference_and_counted_and_sent_as_notes_later(open_test_service) -> None:
    engine = InstantEngine()
    service = await open_test_service([engine])
    await turn(service, "what is this?", images=[CAT])
    assert engine.requests[-1][-1]["content"] == f"what is this?\n{NOTE}", "a text-only engine reads the note"

    [question, _answer] = await service.export(ALICE)
    assert question.content == "what is this?"
    assert question.images == (StoredImage("cat.png", 48_213, "image/png", "https://cdn.example/1/cat.png"),)
    text_tokens = EstimatedTokens().count(defuse_chat_syntax("what is this?"))
    assert question.token_count == text_tokens + DEFAULT_IMAGE_TOKENS
    assert "base64" not in repr(CAT), "the inlined bytes never show in a repr (or a log line)"

    await turn(service, "and now?")
    later = engine.requests[-1]
    assert [(m["role"], m["content"]) for m in (later[1], later[3])] == [
        ("user", f"what is this?\n{NOTE}"),
        ("user", "and now?"),
    ], "the older turn's image goes as the note"
    assert all("images" not in message for message in later)

    assert await service.edit_user_message(ALICE, question.id, "what is this animal?", images=1)
    [edited, *_] = await service.export(ALICE)
    assert edited.images == question.images
    assert edited.token_count == EstimatedTokens().count("what is this animal?") + DEFAULT_IMAGE_TOKENS


async def test_an_image_alone_is_answered(open_test_service) -> None:
    engine = InstantEngine()
    service = await open_test_service([engine])
    events = await turn(service, "", images=[CAT])
    assert engine.requests[-1][-1]["content"] == NOTE
    assert events[-1].text
    [question, _] = await service.export(ALICE)
    assert (question.content, question.token_count) == ("", DEFAULT_IMAGE_TOKENS)


def test_a_newest_message_cut_to_fit_keeps_its_images_cost_within_the_budget() -> None:
    from app.conversation.window import Text, build_window

    counter = EstimatedTokens()
    system = Text.counted("be kind", counter)
    words = "word " * 2000
    newest = Text(words, counter.count(words) + 2 * DEFAULT_IMAGE_TOKENS)
    window = build_window(system, [], newest, 3000, counter)
    assert window.newest_was_cut
    sent = window.messages[-1]["content"]
    assert window.tokens <= 3000
    assert counter.count(sent) + 2 * DEFAULT_IMAGE_TOKENS + counter.count(system.content) <= 3000


def test_a_summarised_message_with_an_image_carries_the_note() -> None:
    message = StoredMessage("user", "look at him", 770, images=(CAT.reference(),), id=1, turn=1)
    request, included = summary_request(None, [message], 2000, EstimatedTokens(), 300)
    assert included == [message]
    assert f"look at him {NOTE}" in request[-1]["content"]
