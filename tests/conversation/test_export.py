"""The export a user takes home: every message with its time, speaker and engine; split, never cut, when large."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.conversation.export import Export, export_files, iso_utc, to_json, to_markdown
from app.storage import StoredMessage

EXPORTED_AT = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
START = datetime(2025, 5, 1, 9, 30, 0, tzinfo=UTC)


def conversation(*texts: str) -> list[StoredMessage]:
    """Alternating user / assistant messages, one minute apart; the assistant's answered by "brain"."""
    return [
        StoredMessage(
            "user" if i % 2 == 0 else "assistant",
            text,
            len(text) // 4 + 1,
            None if i % 2 == 0 else "brain",
            id=i + 1,
            created_at=START + timedelta(minutes=i),
        )
        for i, text in enumerate(texts)
    ]


def export_of(messages: list[StoredMessage]) -> Export:
    return Export("guild:42", EXPORTED_AT, messages)


def texts_in_json_parts(files) -> list[tuple[str, str | None, str, str]]:
    """(at, engine, role, text) per message, pieces of a split message joined back together."""
    joined: list[tuple[str, str | None, str, str]] = []
    continuing = False
    for file in files:
        for item in json.loads(file.data)["messages"]:
            if continuing:
                at, engine, role, text = joined.pop()
                item = {**item, "text": text + item["text"]}
            joined.append((item["at"], item["engine"], item["role"], item["text"]))
            continuing = item.get("continues", False)
    return joined


def test_the_json_has_a_header_and_every_message_with_its_time_role_and_engine() -> None:
    messages = conversation("my dog is called Rex", "What a lovely name!")
    document = json.loads(to_json(export_of(messages)))
    assert document["export"] == {
        "format": "kortana-history",
        "version": 1,
        "scope": "guild:42",
        "message_count": 2,
        "exported_at": "2025-06-01T12:00:00Z",
    }
    assert document["messages"] == [
        {"at": "2025-05-01T09:30:00Z", "role": "user", "engine": None, "text": "my dog is called Rex"},
        {"at": "2025-05-01T09:31:00Z", "role": "assistant", "engine": "brain", "text": "What a lovely name!"},
    ]


def test_the_markdown_names_each_speaker_its_time_and_engine_and_quotes_the_text() -> None:
    messages = conversation("line one\n---\n# not a heading", "An answer")
    markdown = to_markdown(export_of(messages))
    assert markdown.startswith("# Kor'tana — conversation history\n")
    assert "- Scope: guild:42" in markdown and "- Messages: 2" in markdown
    assert "- Exported at: 2025-06-01T12:00:00Z" in markdown
    assert "**You** · 2025-05-01T09:30:00Z\n\n> line one\n> ---\n> # not a heading\n" in markdown
    assert "**Kor'tana** (brain) · 2025-05-01T09:31:00Z\n\n> An answer\n" in markdown
    assert "Part" not in markdown


def test_times_are_utc_whatever_zone_they_come_in() -> None:
    assert iso_utc(datetime(2025, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))) == "2025-01-01T12:00:00Z"
    assert iso_utc(datetime(2025, 1, 1, 12, 0)) == "2025-01-01T12:00:00Z"  # SQLite's naive UTC
    assert iso_utc(None) is None


def test_a_history_that_fits_is_one_markdown_and_one_json_file() -> None:
    files = export_files(export_of(conversation("hi", "hello")), max_bytes=10_000)
    assert [f.name for f in files] == ["kortana-history.md", "kortana-history.json"]
    assert files[0].data.decode() == to_markdown(export_of(conversation("hi", "hello")))
    assert json.loads(files[1].data)["messages"][1]["text"] == "hello"


def test_a_large_history_is_split_into_numbered_parts_within_the_limit_and_nothing_is_lost() -> None:
    messages = conversation(*(f"message number {i} " + "é" * 40 for i in range(60)))
    files = export_files(export_of(messages), max_bytes=1_000)
    markdown = [f for f in files if f.name.endswith(".md")]
    jsons = [f for f in files if f.name.endswith(".json")]
    assert len(markdown) > 1 and len(jsons) > 1
    assert all(len(f.data) <= 1_000 for f in files)
    numbers = range(1, len(markdown) + 1)
    assert [f.name for f in markdown] == [f"kortana-history-{i}-of-{len(markdown)}.md" for i in numbers]
    for number, file in enumerate(jsons, start=1):
        header = json.loads(file.data)["export"]
        assert (header["part"], header["parts"], header["message_count"]) == (number, len(jsons), 60)
    assert [text for *_, text in texts_in_json_parts(jsons)] == [m.content for m in messages]
    all_markdown = "".join(f.data.decode() for f in markdown)
    assert all(f"> message number {i} " in all_markdown for i in range(60))
    assert all(f"- Part {i} of {len(markdown)}" in markdown[i - 1].data.decode() for i in numbers)


def test_a_message_larger_than_a_part_is_split_into_continued_pieces() -> None:
    huge = "".join(f"{i:05d} ☃ \"quoted\"\n" for i in range(400))
    messages = conversation("short question", huge, "after")
    files = export_files(export_of(messages), max_bytes=2_000)
    jsons = [f for f in files if f.name.endswith(".json")]
    assert all(len(f.data) <= 2_000 for f in files)
    assert texts_in_json_parts(jsons) == [
        ("2025-05-01T09:30:00Z", None, "user", "short question"),
        ("2025-05-01T09:31:00Z", "brain", "assistant", huge),
        ("2025-05-01T09:32:00Z", None, "user", "after"),
    ]
    markdown = "".join(f.data.decode() for f in files if f.name.endswith(".md"))
    assert "continued below" in markdown
    assert all(f"> {i:05d} ☃ \"quoted\"\n" in markdown for i in range(400)), "pieces end at a line's end"


def test_more_than_nine_parts_still_fit_their_longer_part_numbers() -> None:
    messages = conversation(*("x" * 300 for _ in range(40)))
    files = export_files(export_of(messages), max_bytes=600)
    jsons = [f for f in files if f.name.endswith(".json")]
    assert len(jsons) >= 10 and all(len(f.data) <= 600 for f in files)
    assert json.loads(jsons[-1].data)["export"]["parts"] == len(jsons)


def test_a_limit_too_small_for_a_header_is_refused_not_an_empty_export() -> None:
    with pytest.raises(ValueError, match="size limit"):
        export_files(export_of(conversation("hello there")), max_bytes=100)


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.text(min_size=1, max_size=400), min_size=1, max_size=12),
    max_bytes=st.integers(min_value=400, max_value=3_000),
)
def test_any_history_splits_into_parts_within_the_limit_that_hold_every_character(
    texts: list[str], max_bytes: int
) -> None:
    messages = conversation(*texts)
    files = export_files(export_of(messages), max_bytes=max_bytes)
    assert all(len(f.data) <= max_bytes for f in files)
    jsons = [f for f in files if f.name.endswith(".json")]
    assert [text for *_, text in texts_in_json_parts(jsons)] == texts
