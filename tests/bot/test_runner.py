"""`kortana run` as a user starts it: a real process against the fake Discord API.

Missing or refused tokens and a refused privileged intent end with one line and a non-zero exit; a running
bot answers and SIGTERM closes it cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

from tests.fakes.discord_api import FakeDiscord
from tests.test_cli import SETTING_NAMES

DISCORD_SETTINGS = ("DISCORD_BOT_TOKEN", "DISCORD_API_BASE_URL", "DISCORD_GATEWAY_URL", "CHAT_CHANNEL_IDS")


async def start_kortana_run(tmp_path: Path, fake: FakeDiscord | None, **env: str) -> asyncio.subprocess.Process:
    clean = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES + DISCORD_SETTINGS}
    if fake is not None:
        clean.update(DISCORD_API_BASE_URL=fake.api_base_url, DISCORD_GATEWAY_URL=fake.gateway_url)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "run",
        cwd=tmp_path,
        env={**clean, "BRAIN": "none", "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", **env},
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


async def test_a_refused_message_content_intent_says_what_to_do(tmp_path: Path) -> None:
    async with FakeDiscord(privileged_intents=(), patch_discord=False) as fake:
        process = await start_kortana_run(
            tmp_path, fake, DISCORD_BOT_TOKEN="token", CHAT_CHANNEL_IDS=str(fake.channel)
        )
        code, stderr = await finished(process)
    assert code == 1
    [line] = kortana_lines(stderr)
    assert "Message Content intent" in line and "CHAT_CHANNEL_IDS" in line


async def test_the_bot_answers_and_sigterm_closes_it_cleanly(tmp_path: Path) -> None:
    async with FakeDiscord(patch_discord=False) as fake:
        process = await start_kortana_run(tmp_path, fake, DISCORD_BOT_TOKEN="token")
        try:
            await fake.wait_for(lambda: fake.identifies, timeout=30, what="IDENTIFY")
            # Migrations ran before the bot connected: the schema is there by the time it identifies.
            with sqlite3.connect(tmp_path / "bot.db") as connection:
                tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
            assert {"conversations", "messages"} <= tables
            await fake.wait_for(lambda: fake.commands, timeout=30, what="slash commands synced")
            await asyncio.sleep(2.5)  # discord.py waits for guilds before it handles messages
            await fake.user_message(fake.channel, f"<@{fake.bot_id}> hello from a real process")
            await fake.wait_for(lambda: fake.bot_messages(fake.channel), timeout=15, what="an answer")
            assert "hello from a real process" in fake.bot_messages(fake.channel)[0].content
            process.send_signal(signal.SIGTERM)
            code, stderr = await finished(process, timeout=15)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    with sqlite3.connect(tmp_path / "bot.db") as connection:
        assert connection.execute("SELECT count(*) FROM messages").fetchone()[0] == 2
