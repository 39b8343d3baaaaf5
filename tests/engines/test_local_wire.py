"""The local worker's wire and the package's import footprint: no model needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.engines import CountsTokens, Engine, ErrorKind, ReportsStatus, Reserving, WarmStart
from app.engines.local import LocalModelEngine, wire

MESSAGES: list[wire.Command | wire.Event] = [
    wire.Generate(
        id=3,
        messages=[
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "héllo 🍒 日本語, and a lone \ud83d half of a pair"},
        ],
        max_tokens=64,
        temperature=0.8,
        repeat_penalty=1.15,
        seed=None,
    ),
    wire.Cancel(id=3),
    wire.Ready(pid=1234, load_s=0.15),
    wire.Fatal(message="ValueError: Failed to load model"),
    wire.Token(id=3, text=" 🍒\n"),
    wire.Done(id=3, finish="length", prompt_tokens=40, completion_tokens=8, first_token_s=0.02, tokens_per_s=None),
    wire.Failed(id=3, kind=ErrorKind.CONTEXT_TOO_LONG, message="Requested tokens exceed context window"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda message: type(message).__name__)
def test_every_message_arrives_as_it_was_sent(message: wire.Command | wire.Event) -> None:
    line = wire.encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()
    decode = wire.decode_command if isinstance(message, wire.Generate | wire.Cancel) else wire.decode_event
    assert decode(line) == message


def test_a_command_is_not_an_event_and_an_event_is_not_a_command() -> None:
    with pytest.raises(wire.WireError):
        wire.decode_event(wire.encode(wire.Cancel(id=1)))
    with pytest.raises(wire.WireError):
        wire.decode_command(wire.encode(wire.Token(id=1, text="hi")))


@pytest.mark.parametrize(
    "line",
    [
        b"llama.cpp printed this\n",
        b'["ev", "token"]\n',
        b'{"ev": "shout", "id": 1}\n',
        b'{"id": 1, "text": "no tag"}\n',
        b'{"ev": "token", "id": 1}\n',
        b'{"ev": "token", "id": 1, "text": "hi", "extra": true}\n',
        b'{"ev": "error", "id": 1, "kind": "on_fire", "message": "?"}\n',
    ],
    ids=["not-json", "not-object", "unknown-tag", "no-tag", "field-missing", "field-unknown", "unknown-error-kind"],
)
def test_a_line_that_is_no_message_is_a_wire_error(line: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_event(line)


def test_the_worker_starts_without_the_engines_half() -> None:
    """The child imports the wire through this package before it loads the model; asyncio and the engine must
    not come with it, or every worker start pays for them."""
    heavy = ["asyncio", "app.engines.local.engine", "app.engines.local.process", "app.engines.chain"]
    probe = f"import sys, app.engines.local.worker; print([name for name in {heavy!r} if name in sys.modules])"
    imported = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


def test_the_local_engine_declares_every_capability_the_chain_uses() -> None:
    engine = LocalModelEngine(model_path="/nonexistent/model.gguf")
    for capability in (Engine, WarmStart, Reserving, ReportsStatus, CountsTokens):
        assert isinstance(engine, capability), capability.__name__
