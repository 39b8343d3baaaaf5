"""`kortana bench search`: the latency of `HistoryStore.search` scoped to one conversation, in a big SQLite file.

Recall runs a search on every turn of a long conversation, in a database that holds every user's messages: what
must stay small is the cost of one conversation's search while the whole table grows. The seeded text is
Zipf-distributed over a large vocabulary with a handful of very common words, so some terms match a few
messages and one matches about 40 % of all of them; conversations are interleaved, as users talk at the same
time. Three term sets are timed: rare words only; rare words with the common one (what a caller gets when it
does not drop stop words); and what `recall_terms` keeps of a recall question naming two rare words among every
common one (what a turn searches for).
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.bench.shared import met, migrated_sqlite_database, ms, percentile, print_table
from app.conversation.recall_query import recall_terms
from app.conversation.setup import open_store
from app.storage import HistoryStore, create_engine

CONVERSATIONS = 1_000
MESSAGES = 600_000
QUICK_MESSAGES = 60_000
SEARCHES = 400
WARM_UP_SEARCHES = 40
RESULTS_PER_SEARCH = 8
# Issue 11's target for what recall adds to a turn.
TARGET_P50_S, TARGET_P99_S = 0.003, 0.010

VOCABULARY = 40_000
ZIPF_EXPONENT = 1.07
# Words of everyday chat, each in a fixed share of the messages; "really" is the one in about 40 % of them.
COMMON_WORDS = {"really": 0.40, "think": 0.25, "today": 0.15, "maybe": 0.10}
COMMON_TERM = "really"
RARE_RANKS = range(VOCABULARY // 2, VOCABULARY)  # words that a whole table holds a few dozen times at most
WORDS_PER_MESSAGE = (6, 24)
SEED = 11


@dataclass(frozen=True, slots=True)
class SeededDatabase:
    url: str
    conversation_ids: Sequence[int]
    words: Sequence[str]


def _word(rank: int) -> str:
    """A made-up word for each rank, different from every other and from English words."""
    syllables = ("ka", "lo", "mi", "ter", "su", "von", "pra", "del", "qui", "zor", "ne", "bal")
    letters = []
    while True:
        rank, digit = divmod(rank, len(syllables))
        letters.append(syllables[digit])
        if rank == 0:
            break
    return "x" + "".join(letters)


def _message_texts(generator: random.Random, words: Sequence[str], count: int) -> list[str]:
    weights = list(itertools.accumulate(1 / (rank + 1) ** ZIPF_EXPONENT for rank in range(len(words))))
    texts = []
    for _ in range(count):
        chosen = generator.choices(words, cum_weights=weights, k=generator.randint(*WORDS_PER_MESSAGE))
        chosen += [word for word, share in COMMON_WORDS.items() if generator.random() < share]
        generator.shuffle(chosen)
        texts.append(" ".join(chosen))
    return texts


async def seed_search_database(directory: Path, message_count: int) -> SeededDatabase:
    """A migrated SQLite file with `message_count` messages over CONVERSATIONS conversations, turns interleaved.

    Written with plain sqlite3 in one transaction, the schema's triggers filling the full-text index as the
    application's writes would: seeding is not what is measured."""
    url = await migrated_sqlite_database(directory, "search.db")
    generator = random.Random(SEED)
    words = [_word(rank) for rank in range(VOCABULARY)]
    with sqlite3.connect(url.removeprefix("sqlite+aiosqlite:///")) as connection:
        connection.executemany(
            "INSERT INTO conversations (user_id, scope) VALUES (?, 'bench')", [(n,) for n in range(CONVERSATIONS)]
        )
        conversation_ids = [row[0] for row in connection.execute("SELECT id FROM conversations ORDER BY id")]
        texts = iter(_message_texts(generator, words, message_count))
        for _ in range(message_count // 2):
            conversation = generator.choice(conversation_ids)
            question = connection.execute(
                "INSERT INTO messages (conversation_id, role, content, token_count) VALUES (?, 'user', ?, 20)",
                (conversation, next(texts)),
            ).lastrowid
            connection.execute(
                "INSERT INTO messages (conversation_id, role, content, token_count, engine, turn_id)"
                " VALUES (?, 'assistant', ?, 20, 'brain', ?)",
                (conversation, next(texts), question),
            )
    return SeededDatabase(url, conversation_ids, words)


def rare_words(generator: random.Random, seeded: SeededDatabase) -> list[str]:
    return [seeded.words[generator.choice(RARE_RANKS)] for _ in range(3)]


def rare_and_common(generator: random.Random, seeded: SeededDatabase) -> list[str]:
    return [*rare_words(generator, seeded)[:2], COMMON_TERM]


def recall_question(generator: random.Random, seeded: SeededDatabase) -> list[str]:
    first, second, _ = rare_words(generator, seeded)
    common = ", ".join(COMMON_WORDS)
    return recall_terms(f"Remind me: {common}, what did I tell you about {first} and {second} again?")


TERM_SETS = (
    ("3 rare words", rare_words),
    (f"2 rare words + {COMMON_TERM!r} (~40 %)", rare_and_common),
    ("a recall question with 2 rare words and every common one, through recall_terms", recall_question),
)


async def search_latencies(
    store: HistoryStore,
    seeded: SeededDatabase,
    terms_for: Callable[[random.Random, SeededDatabase], list[str]],
    searches: int = SEARCHES,
) -> list[float]:
    """Seconds of each of `searches` searches, each in a random conversation for the terms `terms_for` picks,
    over everything the conversation holds, after a warm-up."""
    generator = random.Random(SEED)
    samples = []
    for n in range(WARM_UP_SEARCHES + searches):
        terms = terms_for(generator, seeded)
        conversation = generator.choice(seeded.conversation_ids)
        started = time.perf_counter()
        await store.search(conversation, terms, before_turn=2**62, limit=RESULTS_PER_SEARCH)
        if n >= WARM_UP_SEARCHES:
            samples.append(time.perf_counter() - started)
    return samples


async def run_search_section(directory: Path, quick: bool) -> None:
    message_count = QUICK_MESSAGES if quick else MESSAGES
    started = time.perf_counter()
    seeded = await seed_search_database(directory, message_count)
    seconds = time.perf_counter() - started
    print(f"\n(seeded {message_count:,} messages in {CONVERSATIONS:,} conversations in {seconds:.0f} s)")
    store = open_store(create_engine(seeded.url), 3000)
    rows = []
    try:
        for label, terms_for in TERM_SETS:
            samples = await search_latencies(store, seeded, terms_for)
            p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
            rows.append([label, ms(p50), ms(p99), met(p50 <= TARGET_P50_S and p99 <= TARGET_P99_S)])
    finally:
        await store.close()
    print_table(
        f"One conversation's search, SQLite file, {message_count:,} messages in {CONVERSATIONS:,} conversations "
        f"({SEARCHES} searches each, at most {RESULTS_PER_SEARCH} turns)",
        ["terms", "p50 ms", "p99 ms", f"target ≤ {ms(TARGET_P50_S, 0)} / ≤ {ms(TARGET_P99_S, 0)} ms"],
        rows,
    )
