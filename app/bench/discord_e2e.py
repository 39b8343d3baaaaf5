"""`kortana bench discord`: end-to-end figures of the Discord path.

The real bot (build_bot + open_service on a SQLite file) talks to the fake Discord API with Discord-like
per-channel rate limits; the brain answers at once, either through ChatApiEngine and huggingface_hub's client
from a local OpenAI-compatible server, or in process as a plugin brain (`BRAIN=package.module:attribute`).
Fake Discord, brain server and bot share one event loop on loopback. Times are `time.monotonic()`: the fake
stamps each REST call on arrival, and handles it without awaiting, so a call's stamp is when its text showed.
The fake Discord and the brain server are the test suite's (tests/fakes/), so this section runs from a source
checkout; they are imported when it runs.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from app.bench.shared import (
    BENCH_ANSWER,
    allow_loopback_hub_calls,
    import_test_kit,
    logging_while_measuring,
    met,
    ms,
    percentile,
    print_table,
)
from app.bot.runner import build_bot
from app.config import Settings
from app.conversation.setup import open_service
from app.engines import ChatMessage

# The fakes' types, for reading: tests.fakes.discord's FakeDiscord and RestCall, tests.fakes.openai_server's
# FakeChatServer. The package does not import the test suite before the section runs.
FakeDiscord = Any
RestCall = Any
FakeChatServer = Any

STREAM_CHUNKS = 40
STREAM_CHUNK_DELAY_S = 0.075  # 40 chunks over about 3 s
STREAM_PIECES = [f"word{i:02d} of a long streamed answer, " for i in range(STREAM_CHUNKS - 1)] + ["the end."]
STREAM_ANSWER = "".join(STREAM_PIECES)
STREAM_ASK = "stream please"  # a user message starting with this gets the streamed answer
SLOW_ASK = "slowly please"  # ... and this one an answer after SLOW_ANSWER_S
SLOW_ANSWER_S = 3.0
BURST = 8
TYPING_RETRY_AFTER_S = 3.0
USERS = 5
ANSWERS_PER_CHANNEL = 4  # Discord allows 5 messages per 5 s per channel; stay under it, as normal traffic does
CONCURRENT_STREAMS = 4


class BenchBrain:
    """The plugin brain: answers at once, or streams 40 chunks over ~3 s and notes when it gave the last one."""

    name = "plugin-brain"
    context_window = 8192

    def __init__(self) -> None:
        self.last_chunk_at: dict[str, float] = {}  # user text -> time.monotonic() of the last chunk
        self.asked: list[str] = []

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        said = messages[-1]["content"]
        self.asked.append(said)
        if said.startswith(SLOW_ASK):
            await asyncio.sleep(SLOW_ANSWER_S)
        if not said.startswith(STREAM_ASK):
            yield BENCH_ANSWER
            return
        for piece in STREAM_PIECES:
            await asyncio.sleep(STREAM_CHUNK_DELAY_S)
            if piece is STREAM_PIECES[-1]:
                self.last_chunk_at[said] = time.monotonic()
            yield piece

    async def aclose(self) -> None:
        pass


brain = BenchBrain()


def timed_chat_server() -> FakeChatServer:
    """The HTTP brain: the same answers as the plugin brain, noting when each stream's last chunk was sent."""
    from tests.fakes.openai_server import FakeChatServer, Reply

    def reply(body: dict[str, Any]) -> Reply:
        if body["messages"][-1]["content"].startswith(STREAM_ASK):
            return Reply(STREAM_ANSWER, chunks=STREAM_CHUNKS, chunk_delay_s=STREAM_CHUNK_DELAY_S)
        return Reply(BENCH_ANSWER)

    class TimedChatServer(FakeChatServer):
        def __init__(self) -> None:
            super().__init__(script=reply)
            self.last_chunk_at: dict[str, float] = {}

        async def _answer_stream(self, request: Any, behaviour: Any, model: str, body: dict[str, Any]) -> Any:
            response = await super()._answer_stream(request, behaviour, model, body)
            self.last_chunk_at[body["messages"][-1]["content"]] = time.monotonic()  # the end follows at once
            return response

    return TimedChatServer()


class Rig:
    """The fake's users, and fresh channels handed out so that each run starts with full rate-limit buckets."""

    def __init__(self, fake: FakeDiscord, channels: int) -> None:
        self.fake = fake
        self.users = [fake.alice, fake.bob] + [fake.add_user(f"user{n}") for n in range(USERS - 2)]
        self._channels = iter([fake.add_channel(fake.guild.id, f"bench-{n}") for n in range(channels)])

    def fresh_channels(self, count: int) -> list[int]:
        return [next(self._channels) for _ in range(count)]

    async def ask(self, channel: int, user: dict[str, Any], text: str, answer: str) -> tuple[float, RestCall]:
        """Inject a mention; wait for the reply to show `answer`. Returns the injection time and that REST call."""
        injected = time.monotonic()
        sent = await self.fake.user_message(channel, f"<@{self.fake.bot_id}> {text}", author=user)
        shown = await self.fake.wait_for(lambda: self._showing(channel, sent["id"], answer), timeout=15)
        return injected, shown

    def _showing(self, channel: int, message_id: str, answer: str) -> RestCall | None:
        reply = next((m for m in self.fake.bot_messages(channel)
                      if (m.data.get("message_reference") or {}).get("message_id") == message_id), None)
        if reply is None or reply.content != answer:
            return None
        return next(c for c in self.fake.calls if c.status == 200 and _sets(c, str(reply.id), answer))


def _sets(call: RestCall, message_id: str, content: str) -> bool:
    """Did this call create or edit that message to that content?"""
    return (isinstance(call.json, dict) and call.json.get("content") == content
            and isinstance(call.response, dict) and call.response.get("id") == message_id)


async def run_one_chunk(rig: Rig, answers: int) -> list[float]:
    channels = rig.fresh_channels(-(-answers // ANSWERS_PER_CHANNEL))
    latencies = []
    for n in range(answers):
        channel, user = channels[n % len(channels)], rig.users[n % USERS]
        injected, shown = await rig.ask(channel, user, f"hello {n}", BENCH_ANSWER)
        latencies.append(shown.time - injected)
    return latencies


async def run_streamed(rig: Rig, rounds: int, last_chunk_at: dict[str, float]) -> list[float]:
    delays = []

    async def stream(channel: int, user: dict[str, Any], text: str) -> float:
        _, shown = await rig.ask(channel, user, text, STREAM_ANSWER)
        return shown.time - last_chunk_at[text]

    for round_ in range(rounds):  # a fresh channel per stream: its edits alone use the channel's bucket
        channels = rig.fresh_channels(CONCURRENT_STREAMS)
        delays += await asyncio.gather(*(
            stream(channel, rig.users[n], f"{STREAM_ASK} {round_}-{n}") for n, channel in enumerate(channels)
        ))
    return delays


def call_kinds(calls: Sequence[RestCall]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for call in calls:
        if call.method == "POST" and re.fullmatch(r"/channels/\d+/typing", call.path):
            kinds["typing"] += 1
        elif call.method == "POST" and re.fullmatch(r"/channels/\d+/messages", call.path):
            kinds["POST message"] += 1
        elif call.method == "PATCH" and re.fullmatch(r"/channels/\d+/messages/\d+", call.path):
            kinds["PATCH message"] += 1
        else:
            kinds[f"{call.method} {call.path}"] += 1
        if call.status == 429:
            kinds["429"] += 1
    return kinds


async def bench_brain(kind: str, directory: Path, one_chunk_answers: int, stream_rounds: int) -> dict[str, Any]:
    """Start a bot with this brain; measure one-chunk answers, then streamed ones."""
    channels = 2 + -(-one_chunk_answers // ANSWERS_PER_CHANNEL) + stream_rounds * CONCURRENT_STREAMS
    from tests.fakes.discord import DISCORD_LIKE_RATE_LIMITS, FakeDiscord

    async with FakeDiscord(rate_limits=DISCORD_LIKE_RATE_LIMITS) as fake, timed_chat_server() as server:
        values: dict[str, Any] = dict(
            database_url=f"sqlite+aiosqlite:///{directory / f'{kind}.db'}",
            discord_bot_token="fake-token",
            user_cooldown_seconds=0,
            huggingface_api_key=None,
            hf_base_url=None,
        )
        if kind == "http":
            values.update(brain="http", brain_url=server.base_url)
            last_chunk_at = server.last_chunk_at
        else:
            values.update(brain=f"{__name__}:brain")
            last_chunk_at = brain.last_chunk_at
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        service = await open_service(settings)
        rig = Rig(fake, channels)
        try:
            async with fake.running(build_bot(service, settings, "bench")):  # fast start, as the tests do
                warm_up = rig.fresh_channels(1)[0]
                for n in range(3):
                    await rig.ask(warm_up, rig.users[n], f"warming up {n}", BENCH_ANSWER)
                await asyncio.sleep(0.2)  # let the warm-up's trailing calls land before counting

                since = len(fake.calls)
                latencies = await run_one_chunk(rig, one_chunk_answers)
                await asyncio.sleep(0.2)
                one_chunk_calls = call_kinds(fake.calls[since:])

                since = len(fake.calls)
                delays = await run_streamed(rig, stream_rounds, last_chunk_at)
                await asyncio.sleep(0.2)
                streamed_calls = call_kinds(fake.calls[since:])
        finally:
            await service.close()
    return dict(latencies=latencies, delays=delays, one_chunk_calls=one_chunk_calls, streamed_calls=streamed_calls)


def plugin_brain_settings(database: Path, **values: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=f"sqlite+aiosqlite:///{database}", discord_bot_token="fake-token",
        huggingface_api_key=None, hf_base_url=None, brain=f"{__name__}:brain", **values,
    )  # fmt: skip


async def bench_pressure(directory: Path) -> list[list[Any]]:
    """One user pushing: a burst against the cooldown, a burst behind a slow engine, a rate-limited typing call."""
    from tests.fakes.discord import DISCORD_LIKE_RATE_LIMITS, FakeDiscord

    rows: list[list[Any]] = []
    for label, cooldown, ask in ((f"{BURST} mentions at once, USER_COOLDOWN_SECONDS=2", 2.0, "hello"),
                                 (f"{BURST} mentions at once behind a {SLOW_ANSWER_S:g} s engine, no cooldown", 0.0,
                                  SLOW_ASK)):
        async with FakeDiscord(rate_limits=DISCORD_LIKE_RATE_LIMITS) as fake:
            settings = plugin_brain_settings(directory / "pressure.db", user_cooldown_seconds=cooldown)
            service = await open_service(settings)
            try:
                async with fake.running(bot := build_bot(service, settings, "bench")):
                    since, asked = len(fake.calls), len(brain.asked)
                    for n in range(BURST):
                        await fake.user_message(fake.channel, f"<@{fake.bot_id}> {ask} {n}")
                    await fake.wait_for(lambda: fake.bot_messages(fake.channel) and bot.active_turns == 0,
                                        timeout=BURST * SLOW_ANSWER_S + 10)
                    await asyncio.sleep(0.3)
                    calls = call_kinds(fake.calls[since:])
                    rows.append([label, len(brain.asked) - asked, calls["POST message"], calls["typing"],
                                 calls["429"], "≤ 2 model calls, ≤ 3 posts"])
            finally:
                await service.close()

    async with FakeDiscord() as fake:
        settings = plugin_brain_settings(directory / "typing.db", user_cooldown_seconds=0)
        service = await open_service(settings)
        try:
            async with fake.running(build_bot(service, settings, "bench")):
                fake.rate_limit("POST", r"/channels/\d+/typing", retry_after=TYPING_RETRY_AFTER_S)
                injected, shown = await Rig(fake, 0).ask(fake.channel, fake.alice, "hello", BENCH_ANSWER)
                rows.append([f"typing answered 429, Retry-After {TYPING_RETRY_AFTER_S:g} s: time to the answer",
                             f"{ms(shown.time - injected, 1)} ms", "", "", "", f"≪ {TYPING_RETRY_AFTER_S:g} s"])
        finally:
            await service.close()
    return rows


BRAINS = {"http": "HTTP brain (ChatApiEngine → local server)", "plugin": "plugin brain (in process)"}


async def run_discord_section(directory: Path, quick: bool) -> None:
    import_test_kit("discord", "tests.fakes.discord", "tests.fakes.openai_server")
    allow_loopback_hub_calls()
    # discord.py warns at every start that it has no voice support: irrelevant here.
    with logging_while_measuring(logging.WARNING, levels={"discord.client": logging.ERROR}):
        await _run(directory, quick)


async def _run(directory: Path, quick: bool) -> None:
    one_chunk_answers = 20 if quick else 100
    stream_rounds = 1 if quick else 5
    results = {kind: await bench_brain(kind, directory, one_chunk_answers, stream_rounds) for kind in BRAINS}
    pressure = await bench_pressure(directory)

    rows = []
    for kind, result in results.items():
        latencies = result["latencies"]
        rows.append([BRAINS[kind], len(latencies), ms(percentile(latencies, 0.5), 1),
                     ms(percentile(latencies, 0.99), 1), ms(max(latencies), 1), "p50 ≤ 25 ms",
                     met(percentile(latencies, 0.5) <= 0.025)])
    print_table(
        f"Gateway MESSAGE_CREATE → final text visible, one-chunk answer ({USERS} users, "
        f"{ANSWERS_PER_CHANNEL} answers per channel)",
        ["brain", "answers", "p50 ms", "p99 ms", "max ms", "target", "result"],
        rows,
    )

    rows = []
    for kind, result in results.items():
        delays = result["delays"]
        rows.append([BRAINS[kind], len(delays), ms(percentile(delays, 0.5), 1),
                     ms(percentile(delays, 0.99), 1), ms(max(delays), 1), "≤ 150 ms (peer bot: ≥ 1000 ms)",
                     met(max(delays) <= 0.150)])
    print_table(
        f"Streamed answer ({STREAM_CHUNKS} chunks over ~{STREAM_CHUNKS * STREAM_CHUNK_DELAY_S:g} s, edits at most "
        f"once a second, {CONCURRENT_STREAMS} users at once): engine's last chunk → final text visible",
        ["brain", "answers", "p50 ms", "p99 ms", "max ms", "target", "result"],
        rows,
    )

    rows = []
    for kind, result in results.items():
        for label, calls, answers in (("one chunk", result["one_chunk_calls"], len(result["latencies"])),
                                      ("streamed", result["streamed_calls"], len(result["delays"]))):
            known = ("typing", "POST message", "PATCH message", "429")
            other = sum(count for name, count in calls.items() if name not in known)
            per_answer = [f"{calls[name] / answers:.2f}" for name in known[:3]]
            rows.append([BRAINS[kind], label, *per_answer, f"{other / answers:.2f}", calls["429"],
                         "none" if not calls["429"] else "MISSED"])
    print_table(
        "Discord REST calls per answer (Discord-like rate limits: 5 per 5 s per channel for POST and PATCH)",
        ["brain", "answer", "typing", "POST message", "PATCH message", "other", "429s in all", "target: no 429"],
        rows,
    )

    print_table(
        "One user under pressure (plugin brain): model calls and bot posts a burst costs; typing never holds a turn",
        ["case", "model calls", "POST message", "typing", "429s", "target"],
        pressure,
    )

