"""`python -m tests.workers.first_request`: the first request of a fresh process, and every host it contacted
(tests/engines/test_chat_api.py).

It records each name resolution and connection from the start (before huggingface_hub is imported: the
library's one-time work happens on its first request), streams one answer from a ChatApiEngine against a fake
chat server, and prints `{"text": ..., "contacted": [[what, host], ...]}` as one line of JSON.
"""

from __future__ import annotations

import asyncio
import json
import socket

contacted: list[list[str]] = []
real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect


def recording_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    contacted.append(["resolve", str(host)])
    return real_getaddrinfo(host, *args, **kwargs)


def recording_connect(self, address):  # type: ignore[no-untyped-def]
    contacted.append(["connect", str(address[0])])
    return real_connect(self, address)


socket.getaddrinfo, socket.socket.connect = recording_getaddrinfo, recording_connect  # type: ignore[method-assign]

from app.engines.chat_api import ChatApiEngine  # noqa: E402 - imported once every contact is recorded
from tests.fakes.openai_server import FakeChatServer  # noqa: E402


async def main() -> None:
    async with FakeChatServer() as server:
        engine = ChatApiEngine("brain", "fake/model", server.base_url, None, 2.0, 0.8, 4096)
        chunks = [chunk async for chunk in engine.stream([{"role": "user", "content": "hi"}], 20)]
        text = "".join(chunk for chunk in chunks if isinstance(chunk, str))
    print(json.dumps({"text": text, "contacted": contacted}))


asyncio.run(main())
