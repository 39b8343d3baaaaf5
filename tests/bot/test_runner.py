"""`kortana run` as a user starts it: a real process against the fake Discord API.

Missing or refused tokens and a required privileged intent that is refused end with one line and a non-zero
exit; a refused intent that was only asked for is one warning and a second connection; a running bot answers,
and SIGTERM lets a running answer finish (or, past the grace, says it was cut) and closes it cleanly.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path

from app.bot.sentences import CANNOT_SEE_REPLY, RESTARTING
from tests.fakes.discord import FakeDiscord
from tests.fakes.openai_server import FakeChatServer, Reply
from tests.helpers import child_environment

MESSAGE_CONTENT = 1 << 15


async def start_kortana_run(tmp_path: Path, fake: FakeDiscord | None, **env: str) -> asyncio.subprocess.Process:
    values = {"BRAIN": "none", "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"}
    if fake is not None:
        values.update(DISCORD_API_BASE_URL=fake.api_base_url, DISCORD_GATEWAY_URL=fake.gateway_url)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "run",
        cwd=tmp_path,
        env=child_environment(**{**values, **env}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finished(process: asyncio.subprocess.Process, timeout: float = 30) -> tuple[int, str]:
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=timeout)
    return process.returncode or 0, stderr.decode()


def kortana_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("kortana:")]


async def test_a_missing_token_says_what_to_set(tmp_path: Path) -> None:
    code, stderr = await finished(await start_kortana_run(tmp_path, None))
    assert code == 2
    [line] = kortana_lines(stderr)
    assert "DISCORD_BOT_TOKEN" in line


async def test_a_refused_token_says_what_to_do_and_never_shows_the_token(tmp_path: Path) -> None:
    async with FakeDiscord(token="the-right-token", patch_discord=False) as fake:
        process = await start_kortana_run(tmp_path, fake, DISCORD_BOT_TOKEN="a-wrong-token-123")
        code, stderr = await finished(process)
    assert code == 1
    [line] = kortana_lines(stderr)
    assert "refused the bot token" in line and "Reset Token" in line
    assert "a-wrong-token-123" not in stderr


async def test_a_required_message_content_intent_that_is_refused_says_what_to_do(tmp_path: Path) -> None:
    async with FakeDiscord(privileged_intents=(), patch_discord=False) as fake:
        process = await start_kortana_run(tmp_path, fake, DISCORD_BOT_TOKEN="token", MESSAGE_CONTENT_INTENT="on")
        code, stderr = await finished(process)
    assert code == 1
    [line] = kortana_lines(stderr)
    assert "Message Content intent" in line and "Privileged Gateway Intents" in line


async def test_a_refused_message_content_intent_is_one_warning_and_a_bot_that_says_what_it_cannot_see(
    tmp_path: Path,
) -> None:
    async with FakeDiscord(privileged_intents=(), patch_discord=False) as fake:
        # An open channel too: its loss is part of the one warning, not a second line.
        process = await start_kortana_run(
            tmp_path, fake, DISCORD_BOT_TOKEN="token", CHAT_CHANNEL_IDS=str(fake.channel)
        )
        try:
            await ready(fake, identifies=2)
            first, second = fake.identifies
            assert first["intents"] & MESSAGE_CONTENT and not second["intents"] & MESSAGE_CONTENT
            await fake.user_message(fake.channel, f"<@{fake.bot_id}> hello")
            [answer] = await fake.wait_for(lambda: fake.bot_messages(fake.channel), timeout=15, what="an answer")
            await fake.user_message(fake.channel, "a quiet reply", reply_to=answer.id, reply_ping=False)
            await fake.wait_for(lambda: len(fake.bot_messages(fake.channel)) == 2, timeout=15, what="a notice")
            assert fake.texts(fake.channel)[1] == CANNOT_SEE_REPLY
            process.send_signal(signal.SIGTERM)
            code, stderr = await finished(process, timeout=15)
        finally:
            await killed(process)
    assert code == 0, stderr
    [warning] = [line for line in stderr.splitlines() if "Message Content" in line]
    assert "WARNING" in warning and "Privileged Gateway Intents" in warning and "replies that don't ping" in warning
    assert "CHAT_CHANNEL_IDS" in warning
    assert "Traceback" not in stderr


async def test_sigterm_during_a_long_answer_ends_it_visibly_and_cleanly(tmp_path: Path) -> None:
    twenty_seconds = Reply("word " * 20, chunks=20, chunk_delay_s=1.0)
    async with FakeDiscord(patch_discord=False) as fake, FakeChatServer(default=twenty_seconds) as brain:
        process = await start_kortana_run(
            tmp_path, fake, DISCORD_BOT_TOKEN="token", BRAIN="http", BRAIN_URL=brain.base_url,
            BRAIN_TIMEOUT_SECONDS="60", SHUTDOWN_GRACE_SECONDS="1",
        )  # fmt: skip
        try:
            await ready(fake)
            await fake.user_message(fake.channel, f"<@{fake.bot_id}> tell me a long story")
            [answer] = await fake.wait_for(
                lambda: [m for m in fake.bot_messages(fake.channel) if "word" in m.content], timeout=15, what="a chunk"
            )
            process.send_signal(signal.SIGTERM)
            code, stderr = await finished(process, timeout=20)
        finally:
            await killed(process)
    assert code == 0, stderr
    assert fake.message(answer.id).content == RESTARTING, "the partial answer says it was cut"
    for noise in ("Traceback", "Task exception was never retrieved", "Session is closed", "Unclosed"):
        assert noise not in stderr, stderr
    assert stored_messages(tmp_path) == 1, "the user's message is kept, no partial answer"


async def test_sigterm_lets_a_running_answer_finish_for_as_long_as_a_turn_can_take(tmp_path: Path) -> None:
    fourteen_seconds = Reply("a slow but complete answer", chunks=7, chunk_delay_s=2.0)
    async with FakeDiscord(patch_discord=False) as fake, FakeChatServer(default=fourteen_seconds) as brain:
        process = await start_kortana_run(
            tmp_path, fake, DISCORD_BOT_TOKEN="token", BRAIN="http", BRAIN_URL=brain.base_url,
            BRAIN_TIMEOUT_SECONDS="20",
        )  # fmt: skip
        try:
            await ready(fake)
            await fake.user_message(fake.channel, f"<@{fake.bot_id}> take your time")
            [answer] = await fake.wait_for(lambda: fake.bot_messages(fake.channel), timeout=15, what="a chunk")
            process.send_signal(signal.SIGTERM)
            code, stderr = await finished(process, timeout=40)
        finally:
            await killed(process)
    assert code == 0, stderr
    assert fake.message(answer.id).content == "a slow but complete answer"
    assert stored_messages(tmp_path) == 2
    assert "Traceback" not in stderr


async def test_the_bot_answers_and_sigterm_closes_it_cleanly(tmp_path: Path) -> None:
    async with FakeDiscord(patch_discord=False) as fake:
        process = await start_kortana_run(tmp_path, fake, DISCORD_BOT_TOKEN="token")
        try:
            await fake.wait_for(lambda: fake.identifies, timeout=30, what="IDENTIFY")
            # Migrations ran before the bot connected: the schema is there by the time it identifies.
            with sqlite3.connect(tmp_path / "bot.db") as connection:
                tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
            assert {"conversations", "messages"} <= tables
            await ready(fake)
            await fake.user_message(fake.channel, f"<@{fake.bot_id}> hello from a real process")
            await fake.wait_for(lambda: fake.bot_messages(fake.channel), timeout=15, what="an answer")
            assert "hello from a real process" in fake.bot_messages(fake.channel)[0].content
            process.send_signal(signal.SIGTERM)
            code, stderr = await finished(process, timeout=15)
        finally:
            await killed(process)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert stored_messages(tmp_path) == 2


async def ready(fake: FakeDiscord, identifies: int = 1) -> None:
    """The process identified, synced its commands and handles messages."""
    await fake.wait_for(
        lambda: len(fake.identifies) >= identifies and fake.live_connection(0), timeout=30, what="IDENTIFY"
    )
    await fake.wait_for(lambda: fake.commands, timeout=30, what="slash commands synced")
    await asyncio.sleep(2.5)  # discord.py waits for guilds before it handles messages


async def killed(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


def stored_messages(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "bot.db") as connection:
        return connection.execute("SELECT count(*) FROM messages").fetchone()[0]
