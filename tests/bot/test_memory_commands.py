"""/memory, /export and /forget end to end: real discord.py ↔ fake Discord API, the bot on the test's database."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime

import pytest

from app.bot import forget_confirmation
from app.bot.cogs.memory import MESSAGE_LIMIT, attachment_batches, memory_text
from app.bot.sentences import (
    FORGET_CANCELLED,
    FORGET_TIMED_OUT,
    NOT_YOUR_BUTTON,
    NOTHING_REMEMBERED,
    NOTHING_TO_EXPORT,
)
from app.conversation.events import NO_MEMORY
from app.conversation.export import ExportFile
from app.conversation.service import MemoryReport
from app.storage import ConversationKey, Summary
from tests.helpers import World, answer_to, interaction_text, mention, user_contents

CONFIRM = "Yes, erase everything"


def guild_key(world: World, user: dict) -> ConversationKey:
    return ConversationKey(int(user["id"]), f"guild:{world.fake.guild.id}")


def dm_key(user: dict) -> ConversationKey:
    return ConversationKey(int(user["id"]), "dm")


def sent_files(world: World, interaction) -> list[dict]:
    """The files the bot uploaded for `interaction`, in order (what Discord received)."""
    calls = world.fake.calls_matching("POST", rf"/webhooks/\d+/{re.escape(interaction.token)}")
    return [file for call in calls if call.status and call.status < 300 for file in call.files]


async def buttons_of(world: World, interaction) -> list[dict]:
    message = await world.fake.wait_for(lambda: interaction.original, what="the confirmation")
    return [c for row in message.data["components"] for c in row["components"]]


async def test_memory_shows_the_count_since_when_and_what_is_on(world: World) -> None:
    await world.start()
    await answer_to(world, await mention(world, "my dog is called Rex"))
    await answer_to(world, await mention(world, "and my cat is Tom"))
    interaction = await world.fake.slash_command("memory")
    text = await interaction_text(world, interaction)
    assert interaction.ephemeral and interaction.deferred
    assert "**4 messages**" in text and re.search(r"since <t:\d+:R>", text)
    assert re.search(r"Recall of older messages: \*\*(on|off)\*\*", text)
    assert re.search(r"Summary of older messages: \*\*(on|off)\*\* — none yet", text)

    dm = await world.fake.slash_command("memory", dm=True)
    assert "haven't talked here yet" in await interaction_text(world, dm), "DMs are their own conversation"


def test_the_summary_is_shown_quoted_and_cut_to_fit_one_message() -> None:
    updated = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    short = Summary("The user has a dog, Rex.\nThey live in Lyon.", 12, through_id=40, updated_at=updated)
    report = MemoryReport(42, datetime(2025, 5, 1, tzinfo=UTC), short, recall_enabled=True, summary_enabled=True)
    text = memory_text(report)
    assert "Recall of older messages: **on**" in text and "Summary of older messages: **on**" in text
    assert f"updated <t:{int(updated.timestamp())}:R>" in text
    assert text.endswith("\n> The user has a dog, Rex.\n> They live in Lyon.")

    long = Summary("A fact worth keeping. " * 400, 2000, through_id=40, updated_at=updated)
    text = memory_text(MemoryReport(42, None, long, recall_enabled=True, summary_enabled=False))
    assert len(text) <= MESSAGE_LIMIT and text.endswith("…")
    assert "Recall of older messages: **on**" in text and "Summary of older messages: **off**" in text
    assert "> A fact worth keeping." in text

    nothing = memory_text(MemoryReport(0, None, None, recall_enabled=False, summary_enabled=False))
    assert nothing.splitlines() == [
        NOTHING_REMEMBERED, "• Recall of older messages: **off**", "• Summary of older messages: **off** — none yet"
    ]


async def test_export_sends_the_history_as_markdown_and_json(world: World) -> None:
    await world.start()
    await answer_to(world, await mention(world, "my dog is called Rex"))
    await answer_to(world, await mention(world, "what is my dog called?"))
    interaction = await world.fake.slash_command("export")
    text = await interaction_text(world, interaction)
    assert "4 messages" in text and interaction.ephemeral

    files = {file["filename"]: file["data"].decode() for file in sent_files(world, interaction)}
    assert set(files) == {"kortana-history.md", "kortana-history.json"}
    document = json.loads(files["kortana-history.json"])
    assert document["export"]["scope"] == f"guild:{world.fake.guild.id}"
    assert document["export"]["message_count"] == 4
    assert [(m["role"], m["engine"], m["text"]) for m in document["messages"]] == [
        ("user", None, "my dog is called Rex"),
        ("assistant", "brain", "Hello from the brain!"),
        ("user", None, "what is my dog called?"),
        ("assistant", "brain", "Hello from the brain!"),
    ]
    for message in document["messages"]:
        stored_at = datetime.fromisoformat(message["at"])
        assert stored_at.tzinfo is not None and abs((datetime.now(UTC) - stored_at).total_seconds()) < 120
    markdown = files["kortana-history.md"]
    first = document["messages"][0]["at"]
    assert f"**You** · {first}\n\n> my dog is called Rex" in markdown
    assert "**Kor'tana** (brain) · " in markdown and "> what is my dog called?" in markdown


async def test_an_export_larger_than_discords_limit_comes_in_parts_each_within_it(world: World) -> None:
    world.fake.attachment_size_limit = 2_500  # what Discord says an interaction may upload
    await world.start()
    facts = [f"fact number {number}: " + "the sky is blue " * 8 for number in range(12)]
    for fact in facts:
        await answer_to(world, await mention(world, fact))
    interaction = await world.fake.slash_command("export")
    await interaction_text(world, interaction)

    def all_files() -> list[dict] | None:
        files = sent_files(world, interaction)
        jsons = [f for f in files if f["filename"].endswith(".json")]
        last = json.loads(jsons[-1]["data"])["export"] if jsons else None
        return files if last and last["part"] == last["parts"] == len(jsons) else None

    files = await world.fake.wait_for(all_files, what="every part")
    assert len(files) > 2 and all(f["size"] <= 2_500 for f in files)
    assert not [call for call in world.fake.calls if call.status == 413], "no message exceeded the limit"
    texts = [m["text"] for f in files if f["filename"].endswith(".json") for m in json.loads(f["data"])["messages"]]
    assert [t for t in texts if t.startswith("fact number")] == [fact.strip() for fact in facts]


async def test_an_empty_history_gets_a_sentence_not_empty_files(world: World) -> None:
    await world.start()
    interaction = await world.fake.slash_command("export")
    assert await interaction_text(world, interaction) == NOTHING_TO_EXPORT
    assert sent_files(world, interaction) == []


async def test_forget_confirmed_erases_every_scope_of_the_caller_only(world: World) -> None:
    await world.start()
    alice, bob = world.fake.alice, world.fake.bob
    await answer_to(world, await mention(world, "my secret is the blue door"))
    await answer_to(world, await world.fake.dm_message(alice, "in private: the red key"))
    await answer_to(world, await mention(world, "bob was here", author=bob))

    interaction = await world.fake.slash_command("forget")
    buttons = await buttons_of(world, interaction)
    assert interaction.ephemeral and [b["label"] for b in buttons] == [CONFIRM, "Cancel"]
    click = await world.fake.click(interaction.original, CONFIRM)
    await world.fake.wait_for(lambda: "erased" in interaction.original.content, what="the count")
    assert "erased 4 messages" in interaction.original.content
    assert interaction.original.data["components"] == [], "the buttons are gone"
    assert click.callbacks[0]["type"] == 7, "the click was answered at once, by updating the question"

    assert await world.service.export(guild_key(world, alice)) == []
    assert await world.service.export(dm_key(alice)) == []
    assert len(await world.service.export(guild_key(world, bob))) == 2
    await answer_to(world, await mention(world, "do you know me?"))
    assert user_contents(world.brain.requests[-1]) == ["do you know me?"]


async def test_forget_cancelled_erases_nothing(world: World) -> None:
    await world.start()
    await answer_to(world, await mention(world, "keep this"))
    interaction = await world.fake.slash_command("forget")
    await buttons_of(world, interaction)
    await world.fake.click(interaction.original, "Cancel")
    await world.fake.wait_for(lambda: interaction.original.content == FORGET_CANCELLED)
    assert interaction.original.data["components"] == []
    assert len(await world.service.export(guild_key(world, world.fake.alice))) == 2


async def test_someone_elses_click_is_refused_and_erases_nothing(world: World) -> None:
    await world.start()
    await answer_to(world, await mention(world, "keep this"))
    interaction = await world.fake.slash_command("forget")
    await buttons_of(world, interaction)
    click = await world.fake.click(interaction.original, CONFIRM, user=world.fake.bob)
    await world.fake.wait_for(lambda: click.original is not None and click.original.content == NOT_YOUR_BUTTON)
    assert click.ephemeral
    assert len(await world.service.export(guild_key(world, world.fake.alice))) == 2
    assert [b["label"] for b in await buttons_of(world, interaction)] == [CONFIRM, "Cancel"], "still alice's choice"


async def test_an_unanswered_question_times_out_with_its_buttons_disabled(world: World, monkeypatch) -> None:
    monkeypatch.setattr(forget_confirmation, "CONFIRM_TIMEOUT_S", 0.3)
    await world.start()
    await answer_to(world, await mention(world, "keep this"))
    interaction = await world.fake.slash_command("forget")
    await world.fake.wait_for(lambda: interaction.original and interaction.original.content == FORGET_TIMED_OUT)
    assert all(button["disabled"] for button in await buttons_of(world, interaction))
    assert len(await world.service.export(guild_key(world, world.fake.alice))) == 2


async def test_a_forget_the_database_refuses_says_so_privately_and_erases_nothing(world: World, caplog) -> None:
    if not world.database_url.startswith("sqlite"):
        pytest.skip("a write lock held by another program is SQLite's case")
    await world.start(database_timeout_seconds=0.3)
    await answer_to(world, await mention(world, "something to keep"))
    interaction = await world.fake.slash_command("forget")
    await buttons_of(world, interaction)
    holder = sqlite3.connect(world.database_url.removeprefix("sqlite+aiosqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a backup, or the sqlite3 shell
    try:
        await world.fake.click(interaction.original, CONFIRM)
        await world.fake.wait_for(lambda: interaction.original.content == NO_MEMORY, timeout=10)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert interaction.original.data["components"] == []
    assert len(await world.service.export(guild_key(world, world.fake.alice))) == 2
    [line] = [record for record in caplog.records if "/forget failed" in record.getMessage()]
    assert "database is locked" in line.getMessage() and line.exc_info is None


def test_attachments_are_grouped_into_messages_within_discords_limits() -> None:
    files = [ExportFile(f"part-{i}", b"x" * size) for i, size in enumerate([400, 500, 300, 900, 100])]
    batches = attachment_batches(files, max_bytes=1_000)
    assert [[f.name for f in batch] for batch in batches] == [["part-0", "part-1"], ["part-2"], ["part-3", "part-4"]]
    many = [ExportFile(f"f{i}", b"x") for i in range(23)]
    assert [len(batch) for batch in attachment_batches(many, max_bytes=1_000)] == [10, 10, 3]
