"""`kortana bench settings`: what a server's settings and a member's daily limit add to a turn.

The engine is instant. A plain turn is `respond` alone; a checked turn first does what the bot does for each message
in a server — may this member talk here and the settings in effect in the channel (`here`), their use today
against the daily limit (`used_today`) — then answers with the server's persona, charged to the server. The
server has a persona, a channel persona, a daily limit and access rules; everything is read once and cached, as on
the bot. The two kinds of turn alternate in rounds on the same database, so drift hits both alike.
"""

from __future__ import annotations

import time
from contextlib import aclosing
from pathlib import Path

from app.bench.shared import (
    migrated_sqlite_database,
    ms,
    open_bench_service,
    percentile,
    print_table,
    seed_history,
    throwaway_database,
)
from app.conversation.service import ConversationService
from app.storage import ConversationKey

GUILD, CHANNEL, ADMIN, ROLE = 7, 70, 1, 700
HISTORY = 100
ROUNDS = 10
WARM_UP_TURNS = 20


async def run_settings_section(directory: Path, postgres_url: str | None, quick: bool) -> None:
    turns_per_round = 20 if quick else 200
    rows = [["SQLite file", *await _compare(await migrated_sqlite_database(directory, "settings.db"), turns_per_round)]]
    if postgres_url is not None:
        async with throwaway_database(postgres_url) as url:
            rows.append(["PostgreSQL", *await _compare(url, turns_per_round)])
    print_table(
        f"Per-turn overhead with server settings and limits checked, instant engine, {HISTORY}-message history "
        f"({ROUNDS} alternating rounds of {turns_per_round} turns each)",
        ["database", "plain p50 ms", "plain p99 ms", "checked p50 ms", "checked p99 ms", "p50 change"],
        rows,
    )
    if postgres_url is None:
        print("(PostgreSQL skipped: set DATABASE_URL=postgresql+asyncpg://... to run it too)")


async def _compare(url: str, turns_per_round: int) -> list[str]:
    await seed_history(url, ADMIN, HISTORY)  # the plain conversation, (ADMIN, "bench")
    await seed_history(url, ADMIN + 1, HISTORY)  # the checked one, (ADMIN + 1, "bench")
    service = open_bench_service(url)
    try:
        await _configure_server(service)
        plain_key, checked_key = ConversationKey(ADMIN, "bench"), ConversationKey(ADMIN + 1, "bench")
        for _ in range(WARM_UP_TURNS):
            await _plain_turn(service, plain_key, "warming up")
            await _checked_turn(service, checked_key, "warming up")
        plain: list[float] = []
        checked: list[float] = []
        for round_number in range(ROUNDS):
            for samples, turn, key in ((plain, _plain_turn, plain_key), (checked, _checked_turn, checked_key)):
                for i in range(turns_per_round):
                    started = time.perf_counter()
                    await turn(service, key, f"tell me something new, number {round_number}.{i}")
                    samples.append(time.perf_counter() - started)
    finally:
        await service.close()
    plain_p50, checked_p50 = percentile(plain, 0.5), percentile(checked, 0.5)
    change = f"{(checked_p50 / plain_p50 - 1) * 100:+.1f} %"
    return [ms(plain_p50), ms(percentile(plain, 0.99)), ms(checked_p50), ms(percentile(checked, 0.99)), change]


async def _configure_server(service: ConversationService) -> None:
    settings = service.server_settings
    server = {"persona": "You are the server's own character.", "daily_tokens": 10**8}
    await settings.change(GUILD, None, server, by=ADMIN)
    await settings.change(GUILD, CHANNEL, {"persona": "You are this channel's character.", "open": True}, by=ADMIN)
    await settings.set_rule(GUILD, "channel", CHANNEL + 1, "block", by=ADMIN)
    await settings.set_rule(GUILD, "role", ROLE + 1, "block", by=ADMIN)


async def _plain_turn(service: ConversationService, key: ConversationKey, text: str) -> None:
    async with aclosing(service.respond(key, "bench", text)) as events:
        async for _ in events:
            pass


async def _checked_turn(service: ConversationService, key: ConversationKey, text: str) -> None:
    access, effective = await service.server_settings.here(GUILD, CHANNEL, None, key.user_id, [ROLE])
    limit = effective.daily_tokens.value
    if not access.allowed or (limit is not None and await service.usage.used_today(GUILD, key.user_id) >= limit):
        raise AssertionError("the benchmark's member must be allowed to talk")
    persona, model = effective.persona.value, effective.model.value
    async with aclosing(service.respond(key, "bench", text, persona=persona, model=model, guild_id=GUILD)) as events:
        async for _ in events:
            pass
