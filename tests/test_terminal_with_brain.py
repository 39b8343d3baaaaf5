"""`kortana chat` with BRAIN_URL: answers from the brain with the history; when the brain goes away, the next
answer comes from the next engine at once (issue: the engine chain's "done when")."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from tests.fakes.openai_server import FakeChatServer, Reply
from tests.helpers import child_environment

BRAIN_TIMEOUT_S = 120  # far longer than the test waits: failing over must not wait for the brain's deadline


async def _read_answer(stdout: asyncio.StreamReader) -> str:
    while True:
        line = (await asyncio.wait_for(stdout.readline(), timeout=20)).decode()
        if line.startswith("Kor'tana:"):
            return line


async def test_chat_answers_from_the_brain_then_fails_over_quickly(tmp_path: Path) -> None:
    env = child_environment("HF_HUB_OFFLINE")
    server = FakeChatServer(default=Reply("Hello from the brain!", chunks=3))
    await server.__aenter__()
    chat = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "chat",
        cwd=tmp_path,
        env={
            **env,
            "BRAIN": "http",
            "BRAIN_URL": server.base_url,
            "BRAIN_TIMEOUT_SECONDS": str(BRAIN_TIMEOUT_S),
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
        },
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert chat.stdin and chat.stdout
    brain_running = True
    try:
        chat.stdin.write(b"my cat is called Miso\n")
        assert "Hello from the brain!" in await _read_answer(chat.stdout)
        chat.stdin.write(b"what is my cat called?\n")
        answer = await _read_answer(chat.stdout)
        assert "Hello from the brain!" in answer and "answered by" not in answer
        sent = [(m["role"], m["content"]) for m in server.requests[-1].messages[1:]]
        assert sent == [
            ("user", "my cat is called Miso"),
            ("assistant", "Hello from the brain!"),
            ("user", "what is my cat called?"),
        ]

        await server.__aexit__(None, None, None)  # the brain goes away
        brain_running = False
        started = time.monotonic()
        chat.stdin.write(b"are you still there?\n")
        answer = await _read_answer(chat.stdout)
        assert "answered by echo" in answer
        assert time.monotonic() - started < BRAIN_TIMEOUT_S / 6, "it waited for the brain's deadline"
        chat.stdin.write(b"/quit\n")
        assert await asyncio.wait_for(chat.wait(), timeout=20) == 0
    finally:
        if chat.returncode is None:
            chat.kill()
            await chat.wait()
        if brain_running:
            await server.__aexit__(None, None, None)
