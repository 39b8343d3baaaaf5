"""`kortana models list`: the GGUF models in the Hugging Face cache, their sizes, and the one in use — where it came
from, its quantisation and, measured on request, its tokens/s (from the engine's own status_details)."""

from __future__ import annotations

from pathlib import Path

from app.engines.local.hub_models import CachedModel, LocalModel, cached_models, describe_size

MEASURE_PROMPT = "Tell me, in two sentences, what a companion bot is."
MEASURE_TOKENS = 48


def models_table(
    in_use: LocalModel | None,
    cached: list[CachedModel] | None = None,
    tokens_per_s: float | None = None,
    missing: str | None = None,
) -> str:
    """`missing`: the line to show instead of the model in use, when the configured one is not there."""
    cached = cached_models() if cached is None else cached
    rows = [("", "model", "quantisation", "size")]
    for model in cached:
        using = (
            in_use is not None and in_use.repo_id == model.repo_id and Path(in_use.path).name == Path(model.file).name
        )
        rows.append(
            (
                "*" if using else "",
                f"{model.repo_id}:{model.file}",
                model.quantisation or "?",
                describe_size(model.size_bytes),
            )
        )
    lines = []
    if len(rows) > 1:
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        lines += [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
    else:
        lines.append("No models in the Hugging Face cache yet (kortana models pull owner/name:QUANT).")
    lines.append(missing or in_use_line(in_use, tokens_per_s))
    return "\n".join(lines)


def in_use_line(model: LocalModel | None, tokens_per_s: float | None = None) -> str:
    if model is None:
        return "In use: no local model (none configured and none bundled)."
    parts = [
        Path(model.path).name,
        f"source {model.source}",
        f"quantisation {model.quantisation or '?'}",
        describe_size(model.size_bytes),
    ]
    if tokens_per_s is not None:
        parts.append(f"{tokens_per_s:.1f} tokens/s")
    return "In use: " + " · ".join(parts)


async def measure_tokens_per_s(model: LocalModel, n_ctx: int) -> float | None:
    """Load the model and time one short answer: the tokens/s the engine reports in /ping."""
    from app.engines.local.engine import LocalModelEngine

    engine = LocalModelEngine(model_path=model.path, n_ctx=n_ctx, temperature=0.0, seed=1)
    try:
        async for _ in engine.stream([{"role": "user", "content": MEASURE_PROMPT}], MEASURE_TOKENS):
            pass
        return engine.status_details()["tokens_per_s"]
    finally:
        await engine.aclose()
