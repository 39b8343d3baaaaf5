"""The operator's endpoints on a running bot (the fake Discord, the fake chat servers as engines): /healthz,
/readyz going 503 and back when the database's writes fail or the gateway drops, /metrics parsed by
prometheus_client's own parser and moving with turns, failovers and 429s, nothing private in it, JSON logs that
follow one turn, and `kortana status`'s exit codes."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from app.bot.ops_server import ops_endpoints
from app.bot.status_check import NOT_READY, READY, UNREACHABLE, ask_readiness
from app.conversation.log_context import log_handler
from app.storage import migrate
from app.terminal import chat
from tests.bot.test_runner import finished, killed, start_kortana_run
from tests.fakes.discord import FakeDiscord
from tests.fakes.openai_server import FakeChatServer, HttpError, Reply
from tests.helpers import (
    HF_SECRET,
    World,
    answer_to,
    api_engine,
    child_environment,
    conversation_service,
    history_store,
    interaction_text,
    mention,
)

SECRET_WORDS = "zebra-quartz-7731 my secret plans"


@asynccontextmanager
async def endpoints(world: World) -> AsyncIterator[str]:
    assert world.bot is not None
    async with ops_endpoints(world.bot, "127.0.0.1", 0) as port:
        yield f"http://127.0.0.1:{port}"


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def readiness(base: str) -> tuple[int, dict]:
    status, body = await get(f"{base}/readyz")
    return status, json.loads(body)


async def until_ready_is(base: str, wanted: int, timeout: float = 15) -> dict:
    """Poll /readyz until it answers `wanted`; its body then."""
    async with asyncio.timeout(timeout):
        while True:
            status, body = await readiness(base)
            if status == wanted:
                return body
            await asyncio.sleep(0.02)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def sqlite_world(tmp_path: Path) -> AsyncIterator[World]:
    """A world on a SQLite file another program can lock (writes then fail after the short timeout)."""
    async with FakeDiscord() as fake, FakeChatServer(default=Reply("Hello from the brain!", chunks=3)) as brain, \
            FakeChatServer(default=Reply("Hello from Hugging Face!", chunks=2)) as hf:
        world = World(fake, brain, hf, f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}")
        try:
            yield world
        finally:
            await world.stop()


@contextmanager
def write_lock(database_url: str) -> Iterator[sqlite3.Connection]:
    """Another program holding the file's write lock (reads still work under WAL)."""
    connection = sqlite3.connect(database_url.removeprefix("sqlite+aiosqlite:///"), isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    finally:
        connection.execute("ROLLBACK")
        connection.close()


async def test_healthz_and_readyz_on_a_connected_bot(world: World) -> None:
    await world.start()
    async with endpoints(world) as base:
        assert await get(f"{base}/healthz") == (200, '{"alive": true}')
        status, body = await readiness(base)
    assert status == 200 and body["ready"] is True
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "discord": True, "database": True, "engines": True,
    }  # fmt: skip
    assert "brain" in body["checks"]["engines"]["detail"]


async def test_readyz_is_503_while_database_writes_fail_and_200_once_they_work(sqlite_world: World) -> None:
    world = sqlite_world
    await world.start(database_timeout_seconds=0.3)
    async with endpoints(world) as base:
        await until_ready_is(base, 200)
        with write_lock(world.database_url):
            await answer_to(world, await mention(world, "are you there?"))  # its message cannot be stored
            body = await until_ready_is(base, 503)
            assert body["checks"]["database"] == {"ok": False, "detail": "writes fail: database is locked"}
            assert body["checks"]["discord"]["ok"] and body["checks"]["engines"]["ok"]
        await answer_to(world, await mention(world, "and now?"))  # a write that works ends the episode
        body = await until_ready_is(base, 200)
        scraped = samples((await get(f"{base}/metrics"))[1])
    assert body["checks"]["database"]["ok"]
    # The first turn told its user it could not reach its memory: a failed turn; the second answered.
    assert value(scraped, "kortana_turns_total", front_end="discord", outcome="failed") == 1
    assert value(scraped, "kortana_turns_total", front_end="discord", outcome="answered") == 1
    assert value(scraped, "kortana_database_check_failures_total") >= 1


async def test_readyz_probes_writes_itself_a_lock_with_no_turn_is_503(sqlite_world: World) -> None:
    world = sqlite_world
    await world.start(database_timeout_seconds=0.3)
    async with endpoints(world) as base:
        await until_ready_is(base, 200)
        with write_lock(world.database_url):
            status, body = await readiness(base)  # no turn has tried to write
        assert status == 503
        assert body["checks"]["database"] == {"ok": False, "detail": "writes fail: database is locked"}
        status, body = await readiness(base)
    assert status == 200 and body["checks"]["database"]["ok"]


async def test_readyz_is_200_once_the_lock_is_released_after_a_failed_turn_with_no_turn_since(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    await world.start(database_timeout_seconds=0.3)
    async with endpoints(world) as base:
        with write_lock(world.database_url):
            await answer_to(world, await mention(world, "are you there?"))  # its message cannot be stored
            assert world.service is not None
            assert (await world.service.status()).database_write_failure == "database is locked"
        status, body = await readiness(base)  # no turn since: the probe's write ends the episode
        assert status == 200, body
        assert (await world.service.status()).database_write_failure is None


async def test_a_slow_database_fails_only_the_database_check_and_the_engines_are_still_reported(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    await world.start(database_timeout_seconds=30)  # a write waits for the lock far longer than the check's bound
    async with endpoints(world) as base:
        with write_lock(world.database_url):
            status, body = await readiness(base)
    assert status == 503
    assert body["checks"]["database"] == {"ok": False, "detail": "no answer within 2 s"}
    assert body["checks"]["engines"]["ok"] and "brain" in body["checks"]["engines"]["detail"]
    assert body["checks"]["discord"]["ok"]


async def test_readyz_is_503_while_the_gateway_connection_is_down_and_200_after_it_reconnects(world: World) -> None:
    bot = await world.start()
    fake = world.fake
    async with endpoints(world) as base:
        await until_ready_is(base, 200)
        connection = fake.live_connection(0)
        assert connection is not None
        fake.hold_connections()  # the client's next connection gets no HELLO
        await connection.close(4000, "Unknown error")  # dropped: the client reconnects (and waits)
        body = await until_ready_is(base, 503)
        assert body["checks"]["discord"] == {"ok": False, "detail": "shard(s) 0 disconnected from the gateway"}
        fake.release_connections()
        await until_ready_is(base, 200)
    assert bot.is_ready()


async def test_metrics_parse_and_move_with_turns_failovers_and_discord_rate_limits(world: World) -> None:
    await world.start()
    fake = world.fake
    async with endpoints(world) as base:
        before = samples((await get(f"{base}/metrics"))[1])
        world.brain.script = [HttpError.server_error()]  # the brain fails once: Hugging Face answers
        fake.rate_limit("POST", r"/channels/\d+/messages")
        await answer_to(world, await mention(world, SECRET_WORDS))
        await answer_to(world, await mention(world, f"and {SECRET_WORDS} again"))
        status, text = await get(f"{base}/metrics")
    assert status == 200
    after = samples(text)
    assert value(after, "kortana_turns_total", front_end="discord", outcome="answered") - value(
        before, "kortana_turns_total", front_end="discord", outcome="answered"
    ) == 2
    assert value(after, "kortana_engine_failovers_total", engine="brain", reason="unavailable") == 1
    assert value(after, "kortana_engine_first_chunk_seconds_count", engine="huggingface") == 1
    assert value(after, "kortana_engine_answer_seconds_count", engine="brain") == 1  # the second turn
    assert value(after, "kortana_discord_rate_limited_total", method="POST", route="/channels/{id}/messages") == 1
    assert value(after, "kortana_discord_requests_total", method="POST", route="/channels/{id}/messages") >= 3
    assert value(after, "kortana_engine_breaker_state", engine="brain", state="closed") == 1
    assert value(after, "kortana_database_up") == 1
    assert value(after, "kortana_turns_active") == 0
    assert value(after, "process_resident_memory_bytes") > 0

    # Nothing private anywhere in the output: no text, no user or channel id, no token or key.
    private = [*SECRET_WORDS.split(), str(fake.alice["id"]), str(fake.channel), str(fake.guild.id), "fake-token",
               HF_SECRET]  # fmt: skip
    assert [word for word in private if word in text] == []


async def test_json_logs_follow_one_turn_across_front_end_chain_and_storage(sqlite_world: World) -> None:
    world = sqlite_world
    await world.start(database_timeout_seconds=0.3)
    out = io.StringIO()
    handler = log_handler("json", out)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    front_end = logging.getLogger("app.bot.bot")
    front_end.setLevel(logging.DEBUG)  # its one line per turn, "Turn answered in conversation …", is at DEBUG
    try:
        world.brain.script = [HttpError.server_error()]  # a chain line
        world.hf.script = [Reply("Hello from Hugging Face!", chunks=2, chunk_delay_s=1.0)]
        message = await mention(world, SECRET_WORDS)
        # Once the user's message is stored, the answer's storing fails: a storage line (it is stored later).
        await world.fake.wait_for(lambda: world.hf.requests, what="Hugging Face asked")
        with write_lock(world.database_url):
            await answer_to(world, message)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        front_end.setLevel(logging.NOTSET)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all({"time", "level", "logger", "message", "turn", "shard"} <= line.keys() for line in lines)
    in_turn = [line for line in lines if line["turn"] is not None]
    [turn] = {line["turn"] for line in in_turn}
    loggers = {line["logger"] for line in in_turn}
    assert {"app.bot.bot", "app.engines.chain", "app.storage.history"} <= loggers, loggers
    assert {line["shard"] for line in in_turn} == {0}
    assert len(turn) == 8 and int(turn, 16) >= 0
    assert not [line for line in lines if "zebra" in line["message"]]  # never the user's text


async def test_kortana_status_says_ready_not_ready_and_unreachable(world: World) -> None:
    await world.start()
    async with endpoints(world) as base:
        code, text = await ask_readiness(f"{base}/readyz")
        assert code == READY and text.splitlines()[0].endswith("READY")
        world.bot.begin_shutdown()
        await world.fake.wait_for(lambda: world.bot.is_closed(), what="the bot closed")
        code, text = await ask_readiness(f"{base}/readyz")
    assert code == NOT_READY
    assert "NOT READY" in text and "discord   FAIL  shutting down" in text
    with socket.socket() as spare:  # a port nothing listens on
        spare.bind(("127.0.0.1", 0))
        closed_port = spare.getsockname()[1]
    code, text = await ask_readiness(f"http://127.0.0.1:{closed_port}/readyz", bound_s=2)
    assert code == UNREACHABLE and "cannot ask" in text


async def test_kortana_status_on_an_http_error_body_is_not_ready_and_shows_its_start() -> None:
    async def proxy_error(_request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html><body>\x1b[31mBad Gateway</body></html>\n" + "x" * 500)

    async def not_json(_request: web.Request) -> web.Response:
        return web.Response(status=503, text="Service Unavailable")

    app = web.Application()
    app.router.add_get("/proxy", proxy_error)
    app.router.add_get("/plain", not_json)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        proxy_code, proxy_text = await ask_readiness(f"{base}/proxy")
        plain_code, plain_text = await ask_readiness(f"{base}/plain")
    finally:
        await runner.cleanup()
    assert (proxy_code, plain_code) == (NOT_READY, NOT_READY)
    assert proxy_text.startswith(f"kortana status: {base}/proxy answered HTTP 502, not Kor'tana's /readyz: <html>")
    assert "?[31mBad Gateway" in proxy_text and "\x1b" not in proxy_text and proxy_text.endswith("x…")
    assert plain_text.endswith("answered HTTP 503, not Kor'tana's /readyz: Service Unavailable")


async def test_the_kortana_status_command_exits_by_readiness(world: World) -> None:
    await world.start()
    async with endpoints(world) as base:
        for url, wanted in ((f"{base}/readyz", 0), (f"{base}/nowhere", 1)):  # an HTTP answer, not /readyz
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "app", "status", "--url", url,
                env=child_environment(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, _ = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == wanted, (url, stdout)
    assert b"answered HTTP 404, not Kor'tana's /readyz: 404: Not Found" in stdout


async def test_kortana_run_serves_the_endpoints_on_metrics_port_and_logs_json_lines(tmp_path: Path) -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    async with FakeDiscord(patch_discord=False) as fake:
        # BRAIN=none and no Hugging Face key: only echo answers, which is not ready.
        process = await start_kortana_run(
            tmp_path, fake, DISCORD_BOT_TOKEN="token", METRICS_PORT=str(port), LOG_FORMAT="json"
        )
        try:
            await fake.wait_for(lambda: fake.live_connection(0), timeout=30, what="a gateway connection")
            body = await until_ready_is(base, 503, timeout=30)
            assert body["checks"]["engines"] == {"ok": False, "detail": "no engine but echo is configured"}
            status, text = await get(f"{base}/metrics")
            assert status == 200 and "kortana_turns_active" in text
            code, said = await ask_readiness(f"{base}/readyz")
            assert code == NOT_READY and "engines   FAIL" in said
            process.send_signal(signal.SIGTERM)
            code, stderr = await finished(process, timeout=15)
        finally:
            await killed(process)
    assert code == 0, stderr
    logged = [line for line in stderr.splitlines() if line.startswith("{")]
    assert logged and all(json.loads(line)["level"] for line in logged)
    assert any(f"127.0.0.1:{port}" in json.loads(line)["message"] for line in logged)


async def test_at_debug_no_token_reaches_the_logs(tmp_path: Path) -> None:
    """discord.py's own DEBUG lines carry interaction tokens in webhook URLs and REST payloads: kept out."""
    async with FakeDiscord(token="the-bots-secret-token", patch_discord=False) as fake:
        process = await start_kortana_run(
            tmp_path, fake, DISCORD_BOT_TOKEN="the-bots-secret-token", LOG_LEVEL="DEBUG", LOG_FORMAT="json"
        )
        assert process.stderr is not None
        reading = asyncio.create_task(process.stderr.read())  # read all along: DEBUG fills a pipe quickly
        try:
            await fake.wait_for(lambda: fake.live_connection(0), timeout=30, what="a gateway connection")
            asked = await fake.slash_command("ask", {"question": SECRET_WORDS})
            await fake.wait_for(
                lambda: [call for call in fake.calls if asked.token in call.path and call.status == 200],
                timeout=30, what="the answer through the interaction's webhook",
            )  # fmt: skip
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 15)
            stderr = (await reading).decode()
        finally:
            await killed(process)
    assert process.returncode == 0, stderr
    assert [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]  # it did log at DEBUG
    assert asked.token not in stderr and "the-bots-secret-token" not in stderr


async def test_kortana_run_on_a_metrics_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:  # another process (another shard's bot) listens there
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with FakeDiscord(patch_discord=False) as fake:
            process = await start_kortana_run(tmp_path, fake, DISCORD_BOT_TOKEN="token", METRICS_PORT=str(port))
            try:
                code, stderr = await finished(process, timeout=30)
            finally:
                await killed(process)
    assert code == 2, stderr
    assert [line for line in stderr.splitlines() if line.startswith("kortana:")] == [
        f"kortana: METRICS_PORT {port} on 127.0.0.1 is in use (each process needs its own)"
    ]
    assert "Traceback" not in stderr


async def test_ping_shows_the_figures_metrics_counts(world: World) -> None:
    await world.start()
    world.brain.script = [HttpError.server_error()]
    await answer_to(world, await mention(world, "hello"))
    text = await interaction_text(world, await world.fake.slash_command("ping"))
    assert "Turns since start: 1 answered · Failovers: 1 (brain unavailable 1)" in text


async def test_the_terminal_s_ping_shows_the_same_figures(tmp_path: Path) -> None:
    async with FakeChatServer(script=[HttpError.server_error()]) as brain:
        store = history_store(f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
        await migrate(store.database)
        service = conversation_service(store, [api_engine(brain.base_url)])
        try:
            (tmp_path / "in.txt").write_text("hello\n/ping\n", encoding="utf-8")
            out = io.StringIO()
            with open(tmp_path / "in.txt", encoding="utf-8") as stdin:  # noqa: ASYNC230 - a small local file
                await chat(service, stdin=stdin, out=out)
        finally:
            await service.close()
    assert "Turns since start: 1 answered · Failovers: 1 (brain unavailable 1)" in out.getvalue()


async def test_the_dashboard_and_the_scrape_config_use_the_metrics_served(world: World) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    dashboard = json.loads((docs / "grafana-dashboard.json").read_text(encoding="utf-8"))
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\b(?:kortana|process)_[a-z_]+", expr)}
    await world.start()
    async with endpoints(world) as base:
        await answer_to(world, await mention(world, "hello"))
        world.fake.rate_limit("POST", r"/channels/\d+/messages")
        world.brain.script = [HttpError.server_error()]  # a labelled series shows once it has a sample
        await answer_to(world, await mention(world, "again"))
        served = {sample.name for family in text_string_to_metric_families((await get(f"{base}/metrics"))[1])
                  for sample in family.samples}  # fmt: skip
    assert used - served == set()
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"]) >= 10
    assert "/metrics" in (docs / "prometheus.yml").read_text(encoding="utf-8")
