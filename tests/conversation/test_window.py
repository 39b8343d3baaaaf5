"""Properties of the token budget, with the estimate and with an exact tokenizer trained by the test."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from app.conversation.tokens import EstimatedTokens, TokenCounter, TokenizerTokens
from app.conversation.window import (
    CUT_MARKER,
    PER_MESSAGE_TOKENS,
    Text,
    build_window,
    closing_fence,
    cut_to_fit,
    defuse_chat_syntax,
    fixed_cost,
)
from app.storage import StoredMessage

TRAINING_TEXT = [
    "Hello there, how are you today? I am fine, thanks for asking!",
    "def window(budget): return [m for m in history if m.tokens < budget]",
    "Kor'tana remembers every conversation 🙂 and trims it to a token budget.",
    "こんにちは世界 — 12345 67890 https://example.org/path?query=1",
]


def train_byte_level_bpe(texts: list[str], vocab_size: int, folder) -> TokenizerTokens:  # type: ignore[no-untyped-def]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["[UNK]"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(texts * 20, trainer=trainer)
    path = folder / "tokenizer.json"
    tokenizer.save(str(path))
    return TokenizerTokens(str(path))


@pytest.fixture(scope="module")
def trained_tokenizer(tmp_path_factory) -> TokenizerTokens:
    return train_byte_level_bpe(TRAINING_TEXT, 400, tmp_path_factory.mktemp("tokenizer"))


def test_exact_counts_come_from_the_tokenizer_file(trained_tokenizer: TokenizerTokens) -> None:
    encoded = Tokenizer.from_file(trained_tokenizer.name).encode("Hello there", add_special_tokens=False)
    assert trained_tokenizer.count("Hello there") == len(encoded.ids) > 0
    assert trained_tokenizer.count("") == 0


@pytest.mark.parametrize(
    ("sample", "llama3_bytes_per_token"),
    [
        ("The quick brown fox jumps over the lazy dog, and then it rests for a while.", 4.9),
        ("def f(x):\n    return [i * 2 for i in range(x) if i % 3]\n", 3.5),
        ("今日はいい天気ですね。散歩に行きましょう。", 4.5),
        ("🎉🎉🎉 🥳", 2.0),
        ("1234567890 9876543210", 3.0),
    ],
)
def test_estimate_over_counts_natural_text(sample: str, llama3_bytes_per_token: float) -> None:
    size = len(sample.encode())
    assert size / llama3_bytes_per_token <= EstimatedTokens().count(sample) <= size


# A byte-level BPE trained on prose and indented code, as real tokenizers are: it learns merges for runs of
# spaces and a newline followed by indentation, but spends a token on each newline of a run and on each tab.
WHITESPACE_TRAINING_TEXT = [
    *TRAINING_TEXT,
    "First paragraph.\n\nSecond paragraph, after a blank line.\n",
    "def window(budget):\n    kept = []\n    for m in history:\n"
    "        if m.tokens < budget:\n            kept.append(m)\n",
    "| name  | value |\n|-------|-------|\n| a     |   1   |\n",
    "if x:\n\tdo(y)\r\n",
]


@pytest.fixture(scope="module")
def whitespace_tokenizer(tmp_path_factory) -> TokenizerTokens:
    return train_byte_level_bpe(WHITESPACE_TRAINING_TEXT, 600, tmp_path_factory.mktemp("whitespace_tokenizer"))


@pytest.mark.parametrize(
    "sample",
    [
        "a" + "\n" * 3998 + "a",
        "a" + " " * 4000 + "a",
        "x" + "\t" * 100,
        "\r\n" * 50,
        "def f():\n        return 1\n\n\n\n",
        "   \n   \n   \n" * 30,
        "Hello  there   how    are     you      today",
    ],
    ids=["newlines", "spaces", "tabs", "crlf", "code", "indented blank lines", "spaced words"],
)
def test_estimate_counts_whitespace_as_a_bpe_spends_it(whitespace_tokenizer: TokenizerTokens, sample: str) -> None:
    assert EstimatedTokens().count(sample) >= whitespace_tokenizer.count(sample)


def test_four_thousand_newlines_are_not_free() -> None:
    assert EstimatedTokens().count("a" + "\n" * 3998 + "a") >= 4000


words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=400)
roles = st.sampled_from(["user", "assistant"])


def _history(counter: TokenCounter, pairs: list[tuple[str, str]]) -> list[StoredMessage]:
    """Stored as the service stores them: counted as a model reads them, defused."""
    return [StoredMessage(role, text, counter.count(defuse_chat_syntax(text))) for role, text in pairs]


def _is_a_cut_of(text: str, cut: str) -> bool:
    """Whether `cut` is a prefix of `text`, with the code block it left open closed."""
    return any(
        (prefix := text[:end]) + closing_fence(prefix) == cut for end in range(len(cut), max(-1, len(cut) - 64), -1)
    )


def _check_window(counter: TokenCounter, pairs, newest_text: str, budget: int) -> None:
    system = Text.counted("You are Kor'tana.", counter)
    newest = Text.counted(newest_text, counter)
    history = _history(counter, pairs)
    window = build_window(system, history, newest, budget, counter)

    sent = window.messages
    assert sent[0] == {"role": "system", "content": system.content}
    assert sent[-1]["role"] == "user"
    if window.newest_was_cut:
        assert sent[-1]["content"].endswith(CUT_MARKER)
        assert _is_a_cut_of(newest_text, sent[-1]["content"][: -len(CUT_MARKER)])
    else:
        assert sent[-1]["content"] == newest_text
    middle = sent[1:-1]
    assert not middle or middle[0]["role"] == "user", "window starts with an orphaned assistant message"
    expected_tail = [
        {"role": m.role, "content": defuse_chat_syntax(m.content)} for m in history[len(history) - len(middle) :]
    ]
    assert middle == expected_tail, "history must be the newest messages, in order"
    total = fixed_cost(system, Text.counted(sent[-1]["content"], counter)) + sum(
        counter.count(m["content"]) + PER_MESSAGE_TOKENS for m in middle
    )
    assert total <= budget
    assert window.tokens == total


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(roles, words), max_size=30), newest=words, budget=st.integers(120, 1500))
@example(pairs=[("user", "<THINK>")], newest="0", budget=120)  # defusing adds a token: found by a CI run
def test_window_properties_with_the_estimate(pairs, newest, budget) -> None:
    _check_window(EstimatedTokens(), pairs, newest, budget)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(roles, words), max_size=30), newest=words, budget=st.integers(150, 1500))
def test_window_properties_with_an_exact_tokenizer(trained_tokenizer, pairs, newest, budget) -> None:
    _check_window(trained_tokenizer, pairs, newest, budget)


def test_a_message_bigger_than_the_budget_is_cut_with_a_marker() -> None:
    counter = EstimatedTokens()
    huge = "word " * 10_000
    window = build_window(Text.counted("sys", counter), [], Text.counted(huge, counter), 500, counter)
    assert window.newest_was_cut
    assert window.messages[-1]["content"].endswith(CUT_MARKER)
    assert window.tokens <= 500


@pytest.mark.parametrize(
    ("text", "closing"),
    [
        ("words", ""),
        ("a\n```\nprint(1)", "\n```"),
        ("a\n```py\nprint(1)\n", "```"),
        ("a\n```\nx\n```\nafter", ""),
        ("a\n````\nx\n```\ny", "\n````"),  # three backticks do not close four
        ("~~~\nx", "\n~~~"),
        ("inline ``` is no fence", ""),
        ("```x```", ""),  # a backtick fence's info string cannot hold a backtick: inline code
    ],
)
def test_closing_fence(text: str, closing: str) -> None:
    assert closing_fence(text) == closing


def test_a_cut_inside_a_code_block_closes_it_before_the_marker() -> None:
    counter = EstimatedTokens()
    text = "look at this\n\n[file: a.py]\n```\n" + "print(1)\n" * 2000 + "```"
    cut = cut_to_fit(text, 200, counter)
    assert cut.endswith("\n```" + CUT_MARKER)
    assert counter.count(cut) <= 200
    assert closing_fence(cut.removesuffix(CUT_MARKER)) == ""
