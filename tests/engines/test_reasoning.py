"""The reasoning filter: `<think>` blocks never reach the answer, however the tags are split across chunks."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engines.reasoning import ReasoningFilter


def shown(*chunks: str) -> str:
    """The text a front end ends up showing: what a retraction takes back is replaced, as the chain has it."""
    thoughts = ReasoningFilter()
    text = ""
    for chunk in chunks:
        visible = thoughts.feed(chunk)
        if thoughts.retracted:
            thoughts.retracted, text = False, ""
        text += visible
    return text + thoughts.finish()


def expected(text: str) -> str:
    """What the module promises, written as a whole-text rule: the filter must stream to the same result."""
    opening, stray = text.find("<think>"), text.find("</think>")
    thought_first = stray >= 0 and (opening < 0 or stray < opening)  # the template opened the block
    if thought_first:
        text = text[stray + len("</think>"):].lstrip()
    if "<think>" not in text:
        return "" if thought_first and text.isspace() else text
    before, *after_blocks = re.split(r"<think>.*?(?:</think>|\Z)", text, flags=re.DOTALL)
    visible = ("" if before.isspace() else before) + "".join(part.lstrip() for part in after_blocks)
    return "" if visible.isspace() else visible


ANSWER = "<think>\nThe user greets me. I should greet back.\n</think>\n\nHello there!"


def test_a_think_block_before_the_answer_is_not_shown_nor_the_space_after_it() -> None:
    assert shown(ANSWER) == "Hello there!"


@pytest.mark.parametrize("cut", range(len(ANSWER) + 1))
def test_the_tags_split_at_any_position_give_the_same_answer(cut: int) -> None:
    assert shown(ANSWER[:cut], ANSWER[cut:]) == "Hello there!"


def test_a_character_at_a_time_gives_the_same_answer() -> None:
    assert shown(*ANSWER) == "Hello there!"


def test_an_answer_without_reasoning_streams_chunk_for_chunk() -> None:
    thoughts = ReasoningFilter()
    assert [thoughts.feed(chunk) for chunk in (" Hello", " there", ", 2 < 3", " and a<b")] == [
        " Hello", " there", ", 2 < 3", " and a<b",
    ]
    assert thoughts.finish() == ""
    assert not thoughts.reasoned


def test_only_a_possible_start_of_a_tag_waits_for_the_next_chunk() -> None:
    thoughts = ReasoningFilter()
    assert thoughts.feed("Hello <th") == "Hello "
    assert thoughts.feed("ree") == "<three"
    assert thoughts.feed(" x <") == " x "
    assert thoughts.finish() == "<"


def test_an_unclosed_think_block_makes_the_rest_reasoning() -> None:
    assert shown("Sure. <think>Hmm, ", "maybe I should </thi") == "Sure. "


@pytest.mark.parametrize("cut", range(len("I should be warm.</think>\n\nHi there!") + 1))
def test_a_closing_tag_with_no_opening_one_takes_back_what_came_before_it(cut: int) -> None:
    answer = "I should be warm.</think>\n\nHi there!"  # the chat template opened the block in the prompt
    assert shown(answer[:cut], answer[cut:]) == "Hi there!"


def test_several_blocks_are_all_left_out() -> None:
    assert shown("<think>a</think> One", " <think>b\n</think>\n two") == "One two"


def test_only_reasoning_is_an_empty_answer() -> None:
    thoughts = ReasoningFilter()
    assert thoughts.feed("\n<think>all of it") == ""
    assert thoughts.feed("</think>\n\n  ") == ""
    assert thoughts.finish() == ""
    assert thoughts.reasoned


def test_a_whitespace_answer_without_reasoning_is_kept_as_it_was() -> None:
    assert shown(" ", "\n") == " \n"


def test_leading_whitespace_of_an_answer_that_never_thinks_is_kept() -> None:
    assert shown("  ", "Hi") == "  Hi"


def test_the_chunks_that_carry_reasoning_are_told() -> None:
    thoughts = ReasoningFilter()
    said = []
    for chunk in ("Hi. ", "<think>x", "y</think>", " Bye"):
        thoughts.feed(chunk)
        said.append(thoughts.reasoned_in_last)
    assert said == [False, True, True, False]


pieces = st.sampled_from(["<think>", "</think>", "<", "<th", "</", "think>", ">", " ", "\n", "a", "Hi", "é😀"])
texts = st.lists(pieces | st.text(max_size=4), max_size=14).map("".join)


@given(texts, st.lists(st.integers(min_value=0), max_size=8))
def test_any_chunking_of_a_text_shows_the_same_as_the_whole_rule(text: str, cuts: list[int]) -> None:
    bounds = sorted({cut % (len(text) + 1) for cut in cuts} | {0, len(text)})
    chunks = [text[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]
    assert shown(*chunks) == shown(text) == expected(text)
