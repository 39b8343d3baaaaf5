"""How a turn's images reach each engine (app/engines/images.py), and the chain rendering them per engine, so a
vision tier that fails hands the same turn to a text-only one and to echo."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from hypothesis import given
from hypothesis import strategies as st

from app.engines import ChatMessage, EngineError, ErrorKind, SeesImages, image_note
from app.engines.images import for_engine
from app.engines.plugin import PluginEngine
from tests.helpers import engine_chain, shown_text

CAT = {"url": "https://cdn.example/1/cat.png", "name": "cat.png", "size": 48_213}
DOG = {"url": "data:image/jpeg;base64,/9j/", "name": "dog.jpg", "size": 1_200_000}


def turn(text: str = "what is this?", images=(CAT,)) -> list[ChatMessage]:
    return [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": text, "images": list(images)},
    ]


def test_an_engine_that_sees_gets_the_text_then_one_image_url_part_per_image() -> None:
    sent = for_engine(turn(images=(CAT, DOG)), sees_images=True)
    assert sent[:3] == turn()[:3]
    assert sent[3] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": CAT["url"]}},
            {"type": "image_url", "image_url": {"url": DOG["url"]}},
        ],
    }


def test_an_engine_that_cannot_see_gets_a_note_per_image_and_never_the_images_key() -> None:
    sent = for_engine(turn(images=(CAT, DOG)), sees_images=False)
    assert sent[3] == {
        "role": "user",
        "content": "what is this?\n[the user attached an image: cat.png, 48 kB]\n"
        "[the user attached an image: dog.jpg, 1.2 MB]",
    }
    assert all("images" not in message for message in sent)


def test_an_image_alone_is_only_its_part_or_only_its_note() -> None:
    assert for_engine(turn("", (CAT,)), sees_images=True)[3]["content"] == [
        {"type": "image_url", "image_url": {"url": CAT["url"]}}
    ]
    assert for_engine(turn("", (CAT,)), sees_images=False)[3]["content"] == image_note("cat.png", 48_213)


def test_messages_without_images_pass_unchanged() -> None:
    plain: list[ChatMessage] = [{"role": "user", "content": "hi"}]
    assert for_engine(plain, sees_images=True) == plain == for_engine(plain, sees_images=False)


@given(st.text(max_size=300), st.integers(min_value=0, max_value=10**9))
def test_a_note_is_one_line_whose_brackets_no_file_name_can_close(name: str, size: int) -> None:
    note = image_note(name, size)
    assert note.startswith("[the user attached an image: ") and note.endswith("]")
    assert "\n" not in note and "\r" not in note
    assert note.count("[") == 1 and note.count("]") == 1 and "`" not in note


class Recording:
    """An engine that answers (or fails) and keeps what it was sent; `sees_images` as its operator said."""

    def __init__(self, name: str, *, sees_images: bool, fails: bool = False) -> None:
        self.name = name
        self.context_window = 8192
        self.sees_images = sees_images
        self.fails = fails
        self.sent: list[list[ChatMessage]] = []

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        self.sent.append(list(messages))
        if self.fails:
            raise EngineError(ErrorKind.UNAVAILABLE, "down")
        yield f"{self.name} answered"

    async def aclose(self) -> None:
        """Nothing to close."""


async def collect(chain, messages: list[ChatMessage]) -> list[object]:
    items = []
    async for item in chain.stream(lambda budget: messages, 4000):
        items.append(item)
    return items


async def test_the_chain_fails_over_from_a_vision_tier_to_a_text_only_one_and_to_echo() -> None:
    vision = Recording("brain", sees_images=True, fails=True)
    text_only = Recording("huggingface", sees_images=False, fails=True)
    chain = engine_chain([vision, text_only])
    try:
        shown = shown_text(await collect(chain, turn()))
    finally:
        await chain.aclose()
    assert vision.sent[0][-1]["content"][1] == {"type": "image_url", "image_url": {"url": CAT["url"]}}
    assert text_only.sent[0][-1]["content"] == "what is this?\n[the user attached an image: cat.png, 48 kB]"
    assert "[the user attached an image: cat.png, 48 kB]" in shown, "echo quotes the note, never an image"


async def test_an_engine_that_says_nothing_about_images_is_text_only() -> None:
    class Silent:
        name = "brain"
        context_window = 8192
        sent: list[list[ChatMessage]] = []

        async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
            self.sent.append(list(messages))
            yield "ok"

        async def aclose(self) -> None:
            """Nothing to close."""

    silent = Silent()
    chain = engine_chain([silent])
    try:
        await collect(chain, turn())
    finally:
        await chain.aclose()
    assert not isinstance(silent, SeesImages)
    assert silent.sent[0][-1]["content"].endswith("[the user attached an image: cat.png, 48 kB]")
    assert PluginEngine(Recording("mine", sees_images=True), "brain", 4096).sees_images is True
    assert PluginEngine(object(), "brain", 4096).sees_images is False
