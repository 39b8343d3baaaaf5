"""The recall benchmark measures what it says: its dataset is the same for a seed and covers every kind of fact
and question, and its harness finds a fact in the request while it is in the window and not once it fell out."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.bench.recall import (
    FORGET,
    MEMORY_MODES,
    RESET,
    RESET_DURING_SUMMARY,
    MemoryMode,
    ModeUnavailable,
    judge,
    leak_check_after,
    leaks,
    measure_memory,
    open_recall_service,
    replay,
    run_recall_section,
    scripted_engine,
    settings_for,
)
from app.bench.recall_dataset import (
    FACT_KINDS,
    MIN_CORRECTION_GAP,
    QUESTION_KINDS,
    Dataset,
    Fact,
    Question,
    Turn,
    generate,
)
from app.bench.recall_engine import ScriptedEngine, extractive_summary
from app.conversation.summary import summary_request
from app.conversation.tokens import EstimatedTokens
from app.storage import ConversationKey, StoredMessage, Summary, create_engine
from tests import helpers


def test_the_same_seed_writes_the_same_conversation_byte_for_byte() -> None:
    assert repr(generate(5)).encode() == repr(generate(5)).encode()
    assert generate(5).texts() != generate(6).texts()


def test_a_conversation_is_long_spans_many_days_and_every_fact_has_both_kinds_of_question() -> None:
    dataset = generate()
    assert len(dataset.turns) >= 300
    assert (dataset.turns[-1].at - dataset.turns[0].at).days >= 30
    assert [turn.at for turn in dataset.turns] == sorted(turn.at for turn in dataset.turns)
    users = [turn.user for turn in dataset.turns]
    assert len(set(users)) == len(users), "the scripted engine answers by the user's text"
    assert {fact.kind for fact in dataset.facts} == set(FACT_KINDS)
    texts = dataset.texts()
    for fact in dataset.facts:
        asked = [question for question in dataset.questions if question.fact is fact]
        assert sorted(question.kind for question in asked) == sorted(QUESTION_KINDS), fact.topic
        assert all(evidence in texts for evidence in fact.evidence), fact.topic
        assert all(fact.value in evidence for evidence in fact.evidence), fact.topic
        assert all(fact.value not in question.text for question in asked), "a question must not carry its answer"
        assert fact.distractor_value not in (fact.value, fact.stale_value)
        assert any(fact.distractor_value in text for text in texts), "a look-alike is planted"
        if fact.kind == "corrected":
            assert fact.stale_value not in (None, fact.value)
            stale_at, current_at = texts.index(fact.stale_evidence[0]), texts.index(fact.evidence[0])
            assert current_at - stale_at >= 2 * MIN_CORRECTION_GAP, "the correction comes weeks later"
    literal = {q.fact.topic: q.text for q in dataset.questions if q.kind == "literal"}
    paraphrased = {q.fact.topic: q.text for q in dataset.questions if q.kind == "paraphrased"}
    assert literal["dog"] == "What is my dog named?" and paraphrased["dog"] == "What's my pup called again?"


def tiny_dataset() -> Dataset:
    """30 turns: a fact stated at the start, a city corrected at the end, small talk between."""
    start = datetime(2025, 1, 6, tzinfo=UTC)
    users = [f"Small talk number {n}: the weather was fine and the bus came on time." for n in range(30)]
    answers = [f"Reply number {n}: glad to hear the day went smoothly for you." for n in range(30)]
    users[0], answers[0] = "By the way, my dog is named Rex.", "Rex is a great name for a dog!"
    users[1], answers[1] = "I live in Lisbon, in case that matters.", "Lisbon sounds lovely."
    users[29], answers[29] = "Big news: I moved, I live in Ghent now.", "Ghent sounds lovely."
    turns = tuple(Turn(u, a, start + timedelta(hours=n)) for n, (u, a) in enumerate(zip(users, answers, strict=True)))
    dog = Fact("dog", "stated", "Rex", (users[0], answers[0]))
    city = Fact("city", "corrected", "Ghent", (users[29], answers[29]), "Lisbon", (users[1], answers[1]))
    asked = (Question("What is my dog named?", "literal", dog), Question("Which city do I live in?", "literal", city))
    return Dataset(0, turns, (dog, city), asked)


@pytest.mark.parametrize("recall", [False, True], ids=["window", "recall"])
@pytest.mark.parametrize("budget", [400, 4000])
async def test_the_harness_sees_a_fact_in_the_window_or_recalled_and_misses_it_once_it_fell_out(
    migrated_url: str, budget: int, recall: bool
) -> None:
    settings = helpers.settings_for(history_token_budget=budget, recall_enabled=recall, summary_enabled=False)
    run = await measure_memory(migrated_url, tiny_dataset(), settings)
    dog, city = run.outcomes

    assert (city.evidence, city.value, city.stale_alone) == (True, True, False), "the correction is the newest turn"
    fell_out = budget == 400
    assert (dog.evidence, dog.value) == ((False, False) if fell_out and not recall else (True, True))
    assert dog.tokens <= budget and 0 < dog.window_tokens < dog.tokens
    assert (dog.memory_tokens > 0) == (fell_out and recall), "memory only for what fell out, and only with recall"
    by_scenario = {check.scenario: check for check in run.leak_checks}
    assert by_scenario[RESET].requests == 2 and by_scenario[FORGET].requests == 4, "each question, in each scope"
    assert [check.leaked for check in run.leak_checks] == [0, 0], "after the erase nothing of it is sent"


def test_a_stale_value_alone_and_an_erased_text_are_caught() -> None:
    dataset = tiny_dataset()
    city = dataset.questions[1]
    system = {"role": "system", "content": "You are Kor'tana."}
    stale_only = [system, {"role": "user", "content": dataset.turns[1].user}, {"role": "user", "content": city.text}]
    outcome = judge(stale_only, city, EstimatedTokens(), bare_system=EstimatedTokens().count(system["content"]))
    assert (outcome.evidence, outcome.value, outcome.stale_alone) == (False, False, True)
    assert leaks(stale_only, dataset)
    assert leaks([system, {"role": "user", "content": "Was it Rex?"}], dataset), "a planted value is erased text too"
    assert not leaks([system, {"role": "user", "content": city.text}], dataset)


def test_a_memory_this_version_lacks_is_unavailable_and_switching_it_off_is_not_an_error() -> None:
    base = helpers.settings_for()
    assert settings_for(MEMORY_MODES[0], base).history_token_budget == base.history_token_budget
    with pytest.raises(ModeUnavailable, match="NO_SUCH_MEMORY"):
        settings_for(MemoryMode("future", {"no_such_memory": True}), base)
    settings_for(MemoryMode("off", {"no_such_memory": False}), base)
    assert settings_for(MemoryMode("budget", {"history_token_budget": 500}), base).history_token_budget == 500


async def test_the_forget_check_catches_a_scope_left_unerased_and_passes_a_real_forget(migrated_url: str) -> None:
    dataset = tiny_dataset()
    settings = helpers.settings_for(recall_enabled=False, summary_enabled=False)
    engine = scripted_engine(dataset, settings)
    service = open_recall_service(migrated_url, settings, engine)
    database = create_engine(migrated_url)
    try:
        here, elsewhere = ConversationKey(7, "here"), ConversationKey(7, "elsewhere")
        for scope in (here, elsewhere):
            await replay(service, scope, dataset, database)
        one_scope = await leak_check_after(
            "reset of one scope", engine, service, settings, dataset, [here, elsewhere], lambda: service.reset(here)
        )
        assert (one_scope.requests, one_scope.leaked) == (4, 2), "the scope left holds the whole conversation"

        forgotten = await leak_check_after(
            FORGET, engine, service, settings, dataset, [here, elsewhere], lambda: service.forget(7)
        )
        assert (forgotten.requests, forgotten.leaked) == (4, 0)
    finally:
        await service.close()
        await database.dispose()


def test_the_summary_stand_in_keeps_the_users_own_sentences_of_the_writers_prompt_newest_last_within_the_cap() -> None:
    counter = EstimatedTokens()
    day = datetime(2025, 3, 1, tzinfo=UTC)
    backlog = [
        StoredMessage("user", "I live in Lisbon. The tram was late!", 9, None, 11, 11, day),
        StoredMessage("assistant", "Lisbon sounds lovely, and Porto too.", 8, "scripted", 12, 11, day),
        StoredMessage("user", "Big news: I moved, I live in Ghent now.", 10, None, 13, 13, day),
    ]
    earlier = Summary("My dog is named Rex.", 6, 10)
    request, _ = summary_request(earlier, backlog, 2000, counter, 300)

    summary = extractive_summary(request, 300, counter)
    assert summary == (
        "My dog is named Rex. I live in Lisbon. The tram was late! Big news: I moved, I live in Ghent now."
    )
    assert "Porto" not in summary, "the companion's words are not the user's"

    capped = extractive_summary(request, counter.count("Big news: I moved, I live in Ghent now."), counter)
    assert capped == "Big news: I moved, I live in Ghent now.", "the oldest sentences go first"
    first, _ = summary_request(None, backlog[:1], 2000, counter, 300)
    assert extractive_summary(first, 300, counter) == "I live in Lisbon. The tram was late!", "nothing before"


async def test_the_scripted_engine_holds_a_summary_request_until_released_and_refuses_an_unknown_turn() -> None:
    counter = EstimatedTokens()
    engine = ScriptedEngine({"Hello": "Hi!"}, counter)
    request, _ = summary_request(None, [StoredMessage("user", "I own a fig.", 4, None, 1, 1)], 2000, counter, 300)
    engine.hold_summaries()
    answer = asyncio.create_task(collect(engine.stream(request, 300)))
    await asyncio.wait_for(engine.summary_held.wait(), 5)
    assert not answer.done()
    engine.release_summaries()
    assert await answer == "I own a fig." and engine.summary_requests == [request]
    assert await collect(engine.stream([{"role": "user", "content": "Hello"}], 50)) == "Hi!"
    with pytest.raises(LookupError):
        await collect(engine.stream([{"role": "user", "content": "Not in the script"}], 50))


async def collect(chunks: AsyncIterator[str]) -> str:
    return "".join([chunk async for chunk in chunks])


async def test_a_quick_run_measures_every_memory_side_by_side_with_no_leak(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await run_recall_section(helpers.settings_for(), tmp_path, quick=True)
    output = capsys.readouterr().out

    side_by_side = table(output, "Recall evidence, SQLite file, budget 3,000 tokens: the memories side by side")
    assert side_by_side[0] == "| measure | window | recall | recall+summary | target |"
    assert side_by_side[-1] == "| leaks (all checks) | 0 | 0 | 0 | 0 |"
    leaks_table = table(output, "Leaks after an erase, SQLite file, budget 3,000 tokens")
    scenarios = [row.split(" | ")[0] for row in leaks_table[2:]]
    assert scenarios == [f"| {RESET}", f"| {FORGET}", f"| {RESET_DURING_SUMMARY}"]
    held = leaks_table[-1].split(" | ")
    assert held[1:3] == ["–", "–"] and re.fullmatch(r"0 of [1-9]\d* requests \|", held[3]), held
    assert "extractive stand-in" in output and "not of a model" in output
    assert "Target seeded rows found by the search: met" in output
    assert re.search(r"^\| short conversation that fits the window \(10,000 stored\) \|", output, re.M)


def table(output: str, title: str) -> list[str]:
    """The lines of the table under `### title`: header, rule, rows."""
    lines = output.splitlines()
    start = lines.index(f"### {title}") + 2
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]
