"""`kortana models pull|list` and a chat on a pulled model, as a user runs them, against the fake Hub."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engines.local import default_model_path
from tests.fakes.hub_server import FakeHub, HubRepo
from tests.helpers import child_environment

BUNDLED = Path(default_model_path() or "/nonexistent")
SMOL = "kortana-test/SmolLM2-135M-Instruct-GGUF"
SMOL_FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"

pytestmark = pytest.mark.skipif(
    not BUNDLED.is_file() or importlib.util.find_spec("llama_cpp") is None,
    reason="the local extra and the bundled SmolLM2 file are needed",
)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub({SMOL: HubRepo({SMOL_FILE: BUNDLED, "SmolLM2-135M-Instruct-Q8_0.gguf": b"not loaded"})}) as fake:
        yield fake


def kortana(args: list[str], cwd: Path, hub: FakeHub, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        input=stdin,
        cwd=cwd,
        env=child_environment(
            "HF_*",
            HF_ENDPOINT=hub.endpoint,
            HF_HOME=str(cwd / "hf"),
            DATABASE_URL=f"sqlite+aiosqlite:///{cwd / 'k.db'}",
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pull_then_list_then_chat_on_the_pulled_model(tmp_path: Path, hub: FakeHub) -> None:
    pulled = kortana(["models", "pull", f"{SMOL}:Q4_1"], tmp_path, hub)
    assert pulled.returncode == 0, pulled.stderr
    assert SMOL_FILE in pulled.stdout and "quantisation Q4_1" in pulled.stdout
    assert f"downloaded {SMOL_FILE}" in pulled.stderr, "no terminal: progress goes to the log"

    listed = kortana(["models", "list"], tmp_path, hub, LOCAL_MODEL=f"{SMOL}:Q4_1")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if SMOL_FILE in line and line.startswith("*"))
    assert "Q4_1" in row and "98 MB" in row
    assert f"source hub {SMOL}" in listed.stdout.splitlines()[-1]

    hub.stop()  # the second start needs no network
    chat = kortana(["chat"], tmp_path, hub, "Hello!\n/ping\n", BRAIN="local", LOCAL_MODEL=f"{SMOL}:Q4_1")
    assert chat.returncode == 0, chat.stderr
    ping = next(line for line in chat.stdout.splitlines() if line.strip().startswith("local:"))
    assert f"source hub {SMOL}" in ping and "quantisation Q4_1" in ping and "tokens_per_s" in ping


def test_pull_of_an_unknown_repo_is_one_line_and_exit_1(tmp_path: Path, hub: FakeHub) -> None:
    pulled = kortana(["models", "pull", "kortana-test/Nothing-GGUF"], tmp_path, hub)
    assert pulled.returncode == 1
    assert pulled.stderr.strip().splitlines() == [
        "kortana models pull: no model kortana-test/Nothing-GGUF on the Hugging Face Hub"
    ]


def test_list_before_a_pull_says_what_to_do(tmp_path: Path, hub: FakeHub) -> None:
    listed = kortana(["models", "list"], tmp_path, hub, LOCAL_MODEL=f"{SMOL}:Q4_1")
    assert listed.returncode == 0, listed.stderr
    assert "No models in the Hugging Face cache yet" in listed.stdout
    assert listed.stdout.splitlines()[-1] == (
        f"In use: none yet, {SMOL} is not in the local cache: kortana models pull {SMOL}:Q4_1"
    )
    assert hub.requests == [], "listing never downloads"
