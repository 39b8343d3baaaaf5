"""Files attached to a message, end to end: the real discord.py client downloads them from the fake Discord's
CDN, and their text reaches the engine and the stored history."""

from __future__ import annotations

import time

from app.bot.sentences import files_failed, files_unreadable
from app.conversation.service import CUT_NOTICE
from app.conversation.window import CUT_MARKER
from tests.helpers import World, answer_to, mention, user_contents

SOURCE = b"def add(a, b):\n    return a + b\n"
PY_FILE = {"filename": "maths.py", "content": SOURCE, "content_type": "text/x-python"}


def alice_key(world: World):
    return world.bot.key_for(int(world.fake.alice["id"]), world.bot.guilds[0], 0)


async def test_a_text_file_is_in_the_engine_request_and_the_history_and_later_turns_see_it(world: World) -> None:
    await world.start()
    message = await mention(world, "what does this do?", attachments=[PY_FILE])
    assert await answer_to(world, message) == ["Hello from the brain!"]
    block = "[file: maths.py]\n```\ndef add(a, b):\n    return a + b\n```"
    assert user_contents(world.brain.requests[-1]) == [f"what does this do?\n\n{block}"]
    assert [m.content for m in await world.service.export(alice_key(world))][0] == f"what does this do?\n\n{block}"
    assert any(call.path.startswith("/attachments/") for call in world.fake.calls), "downloaded from the CDN"

    await world.restart()  # the file is in the stored history, not in memory
    later = await mention(world, "and rename the function?")
    await answer_to(world, later)
    assert user_contents(world.brain.requests[-1])[0].endswith(block)


async def test_a_file_alone_is_the_message_and_latin1_bytes_do_not_crash(world: World) -> None:
    await world.start()
    old_log = "2024-01-02 caf\xe9 ferm\xe9 \u2014 erreur de connexion au serveur\n".encode("latin-1", "replace")
    message = await mention(world, "", attachments=[{"filename": "app.log", "content": old_log}])
    assert await answer_to(world, message) == ["Hello from the brain!"]
    sent = user_contents(world.brain.requests[-1])[0]
    assert sent.startswith("[file: app.log]\n```\n2024-01-02 caf\ufffd ferm\ufffd ? erreur")


async def test_an_oversized_file_is_cut_with_a_marker_and_the_user_is_told(world: World) -> None:
    await world.start(attachment_max_bytes=1000)
    big = b"".join(b"line %05d of a long log\n" % n for n in range(2000))  # 50 kB
    message = await mention(world, "summarise", attachments=[{"filename": "big.log", "content": big}])
    texts = await answer_to(world, message)
    assert texts == ["Hello from the brain!\n-# **big.log** is 50 kB: I read only its first 1 kB."]
    sent = user_contents(world.brain.requests[-1])[0]
    assert sent.startswith("summarise\n\n[file: big.log]\n```\nline 00000")
    assert sent.endswith("```\n[… cut: the file is 50 kB; I read the first 1 kB]")
    assert len(sent) < 1200


async def test_a_turn_over_half_the_token_budget_cuts_the_file_not_the_users_words(world: World) -> None:
    await world.start(history_token_budget=1000)
    long_file = b"".join(b"value_%d = %d\n" % (n, n * n) for n in range(400))
    words = "Please explain the pattern in these numbers."
    message = await mention(world, words, attachments=[{"filename": "squares.py", "content": long_file}])
    texts = await answer_to(world, message)
    assert texts[0].endswith(f"-# {CUT_NOTICE}")
    sent = user_contents(world.brain.requests[-1])[0]
    assert sent.startswith(f"{words}\n\n[file: squares.py]") and sent.endswith(CUT_MARKER)
    stored = (await world.service.export(alice_key(world)))[0].content
    assert stored == sent, "stored as sent: a message is kept within half the budget"
    # So a later turn still sends it, with what came before it.
    follow_up = await mention(world, "and the last value?")
    await answer_to(world, follow_up)
    assert user_contents(world.brain.requests[-1]) == [sent, "Hello from the brain!", "and the last value?"]


async def test_a_binary_file_alone_gets_one_sentence_and_no_model_call(world: World) -> None:
    await world.start()
    # (An image is no binary file any more: it goes to the engines, tests/bot/test_images.py.)
    archive = {"filename": "photos.zip", "content": b"PK\x03\x04\x00\x00", "content_type": "application/zip"}
    message = await mention(world, "", attachments=[archive])
    assert await answer_to(world, message) == [files_unreadable(["photos.zip"])]
    disguised = await mention(  # bob's: one notice per user per notice interval
        world, "", attachments=[{"filename": "notes.txt", "content": b"\x00\x01\x02\xff"}], author=world.fake.bob
    )
    assert await answer_to(world, disguised) == [files_unreadable(["notes.txt"])]
    assert world.brain.requests == []
    assert not any(call.path.endswith("/photos.zip") for call in world.fake.calls), "not text: never downloaded"


async def test_words_with_a_text_file_and_an_archive_are_answered_with_a_sentence_about_the_archive(
    world: World,
) -> None:
    await world.start()
    archive = {"filename": "photos.zip", "content": b"PK\x03\x04\x00\x00", "content_type": "application/zip"}
    message = await mention(world, "both of these", attachments=[PY_FILE, archive])
    assert await answer_to(world, message) == [f"Hello from the brain!\n-# {files_unreadable(['photos.zip'])}"]
    assert "[file: maths.py]" in user_contents(world.brain.requests[-1])[0]


async def test_a_failed_or_hanging_download_gets_one_sentence_within_the_bound(world: World) -> None:
    await world.start(attachment_download_seconds=0.5)
    world.fake.fail("GET", r"/attachments/.*", 404)
    gone = await mention(world, "", attachments=[PY_FILE])
    assert await answer_to(world, gone) == [files_failed(["maths.py"])]

    world.fake.delay("GET", r"/attachments/.*", 3)
    began = time.monotonic()
    slow = await mention(world, "look", attachments=[PY_FILE])
    texts = await answer_to(world, slow)
    assert time.monotonic() - began < 2.5
    assert texts == [f"Hello from the brain!\n-# {files_failed(['maths.py'])}"]
    assert user_contents(world.brain.requests[-1]) == ["look"]
