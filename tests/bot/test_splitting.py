"""Splitting long answers into Discord messages: size, boundaries, code fences, nothing lost."""

from __future__ import annotations

import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from app.bot.splitting import DISCORD_LIMIT, FENCE, split_message, split_pages


def _words(pages: list[str]) -> list[str]:
    return " ".join(page.replace(FENCE + "python", " ").replace(FENCE, " ") for page in pages).split()


def test_a_short_answer_is_one_page() -> None:
    assert split_message("hello") == ["hello"]


def test_a_4500_character_answer_splits_at_paragraphs() -> None:
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 11 for i in range(15)]
    text = "\n\n".join(paragraphs)
    assert 4400 < len(text) < 4700
    pages = split_message(text)
    assert len(pages) == 3
    assert all(len(page) <= DISCORD_LIMIT for page in pages)
    assert all(page.startswith("Paragraph") for page in pages), "each page starts at a paragraph"
    assert _words(pages) == text.split()


def test_a_cut_inside_a_code_block_closes_and_reopens_the_fence() -> None:
    code = "\n".join(f"    value_{i} = compute({i})  # step {i}" for i in range(120))
    text = "Here is the code:\n\n```python\n" + code + "\n```\nThat's it!"
    pages = split_message(text)
    assert len(pages) >= 3
    for page in pages:
        assert len(page) <= DISCORD_LIMIT
        assert page.count(FENCE) % 2 == 0, "every page's fences are balanced"
    assert pages[1].startswith("```python\n")
    assert _words(pages) == text.replace(FENCE + "python", " ").replace(FENCE, " ").split()


def test_one_enormous_word_is_cut_anyway() -> None:
    pages = split_message("x" * 4500)
    assert [len(page) for page in pages] == [1996, 1996, 508]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet="abc def\n", min_size=0, max_size=700),
            st.just("\n```python\n"),
            st.just("\n```js some text after the fence "),
            st.just("\n```\n"),
            st.text(min_size=1, max_size=50),
        ),
        max_size=20,
    )
)
def test_pages_fit_and_keep_every_character(pieces: list[str]) -> None:
    text = "".join(pieces)
    pages = split_message(text)
    assert all(len(page) <= DISCORD_LIMIT for page in pages)
    joined = "".join(pages)
    without_space = lambda s: "".join(s.split()).replace(FENCE, "")  # noqa: E731
    letters_a = lambda s: without_space(s).replace("python", "").count("a")  # noqa: E731
    assert letters_a(joined) == letters_a(text)
    if len(text) <= DISCORD_LIMIT and text.strip():
        assert pages == [text]


def test_text_on_the_fence_line_is_not_carried_to_every_page() -> None:
    for text in ("```" + "x" * 3000, "```python " + "word " * 700):
        pages = split_message(text)
        assert 2 <= len(pages) <= 3
        assert all(len(page) <= DISCORD_LIMIT for page in pages)


def _without_whitespace(text: str) -> str:
    return "".join(text.split())


def test_an_inline_fence_at_a_line_start_opens_no_code_block() -> None:
    text = "```x = 1``` is inline code\n" + "and then plain words " * 200
    pages = split_message(text)
    assert len(pages) == 3
    assert all(page.count(FENCE) % 2 == 0 for page in pages), "no page is left inside a code block"
    assert _without_whitespace("".join(pages)) == _without_whitespace(text), "no fence or word was added"


def test_text_after_an_opening_fence_is_not_taken_for_its_language() -> None:
    text = "```js some text after the fence\n" + "let x = 1;\n" * 300 + "```"
    pages = split_message(text)
    assert len(pages) == 2
    assert pages[0].endswith("\n" + FENCE) and pages[1].startswith(FENCE + "\n"), "reopened without a language"
    added_fences_removed = pages[0][: -len(FENCE)] + pages[1][len(FENCE) :]
    assert _without_whitespace(added_fences_removed) == _without_whitespace(text)


_FENCE_HEAVY_PIECES = st.one_of(
    st.text(alphabet="ab `\n", min_size=0, max_size=900),
    st.sampled_from(["```", "```py\n", "\n```\n", "```inline```", "```js then text", "\n```c++\n", "````"]),
    st.text(min_size=1, max_size=40),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_FENCE_HEAVY_PIECES, max_size=25))
def test_pages_give_back_the_text_once_the_added_fences_are_removed(pieces: list[str]) -> None:
    text = "".join(pieces)
    pages = split_pages(text)
    assert [str(page) for page in pages] == split_message(text)
    assert all(len(str(page)) <= DISCORD_LIMIT and str(page).strip() for page in pages)
    # The bodies are the text in order; only whitespace at the cuts is dropped.
    position = 0
    for page in pages:
        found = text.find(page.body, position)
        assert found >= 0 and not text[position:found].strip(), "a body is the next stretch of the text"
        position = found + len(page.body)
    assert not text[position:].strip(), "nothing is lost at the end"
    # A block is reopened exactly where one was closed, with a language word at most; every page renders whole.
    for before, after in itertools.pairwise(pages):
        assert bool(after.reopened) == before.closed
        if after.reopened:
            assert re.fullmatch(r"```[\w+#.-]{0,20}\n", after.reopened)
    assert all(str(page).count(FENCE) % 2 == 0 for page in pages[:-1])
