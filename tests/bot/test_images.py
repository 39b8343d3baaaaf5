"""Images attached to a message, end to end: the real discord.py client against the fake Discord (its CDN), the
real huggingface_hub client against the local chat servers (brain and HF), whose recorded request JSON shows
what each engine was sent; and the history as the database holds it."""

from __future__ import annotations

import base64
import json

from sqlalchemy import select

from app.bot.sentences import files_skipped, images_too_large
from app.conversation.turn_images import DEFAULT_IMAGE_TOKENS
from app.storage import create_engine, messages
from tests.fakes.openai_server import HttpError
from tests.helpers import World, answer_to, mention, user_contents

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # 1,032 bytes, not text
PHOTO = {"filename": "photo.png", "content": PNG, "content_type": "image/png"}
NOTE = "[the user attached an image: photo.png, 1 kB]"


def alice_key(world: World):
    return world.bot.key_for(int(world.fake.alice["id"]), world.bot.guilds[0], 0)


def cdn_url(message: dict) -> str:
    return message["attachments"][0]["url"]


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def downloaded(world: World, name: str) -> bool:
    return any(call.path.endswith(f"/{name}") for call in world.fake.calls)


async def stored_rows(world: World) -> list[tuple[str, str | None, int]]:
    database = create_engine(world.database_url)
    try:
        async with database.connect() as connection:
            query = select(messages.c.role, messages.c.images, messages.c.token_count).order_by(messages.c.id)
            return [tuple(row) for row in (await connection.execute(query)).all()]
    finally:
        await database.dispose()


async def test_an_image_reaches_a_vision_brain_as_an_image_url_part_with_the_cdn_url(world: World) -> None:
    await world.start(brain_vision=True)
    message = await mention(world, "what is this?", attachments=[PHOTO])
    assert await answer_to(world, message) == ["Hello from the brain!"]
    assert user_contents(world.brain.requests[-1]) == [
        [{"type": "text", "text": "what is this?"}, image_part(cdn_url(message))]
    ]
    assert not downloaded(world, "photo.png"), "url delivery: the engine's server fetches it, we don't"


async def test_inline_delivery_sends_a_data_url_of_the_exact_bytes(world: World) -> None:
    await world.start(brain_vision=True, image_delivery="inline")
    message = await mention(world, "and this?", attachments=[PHOTO])
    assert await answer_to(world, message) == ["Hello from the brain!"]
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert user_contents(world.brain.requests[-1]) == [[{"type": "text", "text": "and this?"}, image_part(data_url)]]
    rows = await stored_rows(world)
    assert data_url not in json.dumps(rows) and "base64" not in json.dumps(rows), "the bytes are never stored"


async def test_a_text_only_engine_gets_the_note_and_no_parts(world: World) -> None:
    await world.start()  # BRAIN_VISION is off by default
    message = await mention(world, "what is this?", attachments=[PHOTO])
    assert await answer_to(world, message) == ["Hello from the brain!"]
    assert user_contents(world.brain.requests[-1]) == [f"what is this?\n{NOTE}"]


async def test_a_failing_vision_brain_hands_the_turn_to_text_only_hf_which_gets_the_note(world: World) -> None:
    await world.start(brain_vision=True)
    world.brain.script = [HttpError.server_error()]
    message = await mention(world, "describe it", attachments=[PHOTO])
    texts = await answer_to(world, message)
    assert texts == ["Hello from Hugging Face!\n-# answered by huggingface"]
    vision_request = [{"type": "text", "text": "describe it"}, image_part(cdn_url(message))]
    assert user_contents(world.brain.requests[-1]) == [vision_request]
    assert user_contents(world.hf.requests[-1]) == [f"describe it\n{NOTE}"]


async def test_history_keeps_the_reference_and_a_later_turn_sends_the_older_image_as_the_note(world: World) -> None:
    await world.start(brain_vision=True)
    message = await mention(world, "look", attachments=[PHOTO])
    await answer_to(world, message)
    (role, images, _), _answer = await stored_rows(world)
    assert role == "user"
    assert json.loads(images) == [
        {"name": "photo.png", "size": len(PNG), "content_type": "image/png", "url": cdn_url(message)}
    ]
    stored = (await world.service.export(alice_key(world)))[0]
    assert stored.content == "look" and stored.images[0].url == cdn_url(message)

    await world.restart()  # from the database, not from memory
    later = await mention(world, "what colour was it?")
    await answer_to(world, later)
    assert user_contents(world.brain.requests[-1]) == [f"look\n{NOTE}", "Hello from the brain!", "what colour was it?"]


async def test_each_image_counts_image_tokens_in_the_stored_budget(world: World) -> None:
    await world.start(image_tokens=500)
    plain = await mention(world, "same words")
    await answer_to(world, plain)
    with_image = await mention(world, "same words", attachments=[PHOTO, {**PHOTO, "filename": "second.png"}])
    await answer_to(world, with_image)
    counts = [count for role, _, count in await stored_rows(world) if role == "user"]
    assert counts[1] - counts[0] == 2 * 500
    assert DEFAULT_IMAGE_TOKENS == 765  # the documented default


async def test_an_image_alone_is_the_message_and_is_answered(world: World) -> None:
    await world.start(brain_vision=True)
    message = await mention(world, "", attachments=[PHOTO])
    assert await answer_to(world, message) == ["Hello from the brain!"]
    assert user_contents(world.brain.requests[-1]) == [[image_part(cdn_url(message))]]

    await world.restart(brain_vision=False)
    alone = await mention(world, "", attachments=[{"filename": "cat.jpg", "content": b"\xff\xd8\xff" * 400}])
    assert await answer_to(world, alone) == ["Hello from the brain!"]
    assert user_contents(world.brain.requests[-1])[-1] == "[the user attached an image: cat.jpg, 1 kB]"


async def test_an_image_too_large_to_inline_gets_one_sentence_and_no_model_call(world: World) -> None:
    await world.start(brain_vision=True, image_delivery="inline", image_max_bytes=1000)
    message = await mention(world, "", attachments=[PHOTO])
    assert await answer_to(world, message) == [images_too_large(["photo.png"], 1000)]
    assert world.brain.requests == []
    assert not downloaded(world, "photo.png"), "its size was over the cap: never downloaded"


async def test_attachment_max_files_counts_images_and_text_files_together(world: World) -> None:
    await world.start(brain_vision=True, attachment_max_files=1)
    py_file = {"filename": "maths.py", "content": b"x = 1\n", "content_type": "text/x-python"}
    message = await mention(world, "both", attachments=[py_file, PHOTO])
    texts = await answer_to(world, message)
    assert texts == [f"Hello from the brain!\n-# {files_skipped(['photo.png'], 1)}"]
    assert isinstance(user_contents(world.brain.requests[-1])[0], str), "no image part: the image was skipped"


async def test_regenerate_sends_the_turns_image_again_and_the_older_ones_as_the_note(world: World) -> None:
    await world.start(brain_vision=True)
    fake = world.fake
    first = await mention(world, "what is this?", attachments=[PHOTO])
    await answer_to(world, first)
    second = await mention(world, "and this one?", attachments=[{**PHOTO, "filename": "other.png"}])
    await answer_to(world, second)
    reply = await fake.wait_for(
        lambda: next((m for m in fake.bot_messages(fake.channel) if int(m.id) > int(second["id"])), None)
    )

    await fake.click(reply, "Regenerate")

    await fake.wait_for(lambda: len(world.brain.requests) == 3, what="the regenerated request")
    await fake.wait_for(lambda: world.bot.active_turns == 0, what="the turn ended")
    assert user_contents(world.brain.requests[2]) == [
        f"what is this?\n{NOTE}",
        "Hello from the brain!",
        [{"type": "text", "text": "and this one?"}, image_part(cdn_url(second))],
    ]


async def test_regenerate_with_inline_delivery_sends_the_image_as_its_note(world: World) -> None:
    await world.start(brain_vision=True, image_delivery="inline")
    fake = world.fake
    asked = await mention(world, "what is this?", attachments=[PHOTO])
    await answer_to(world, asked)
    reply = await fake.wait_for(
        lambda: next((m for m in fake.bot_messages(fake.channel) if int(m.id) > int(asked["id"])), None)
    )

    await fake.click(reply, "Regenerate")

    await fake.wait_for(lambda: len(world.brain.requests) == 2, what="the regenerated request")
    await fake.wait_for(lambda: world.bot.active_turns == 0, what="the turn ended")
    # The bytes were never kept, and the engine cannot fetch the CDN URL: it reads the note.
    assert user_contents(world.brain.requests[1]) == [f"what is this?\n{NOTE}"]
