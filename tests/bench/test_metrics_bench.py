"""`kortana bench metrics` compares turns with the operator's metrics on and off, in one table."""

from __future__ import annotations

import re
from pathlib import Path

from tests.bench.test_bench import run_bench, table


def test_the_metrics_section_compares_measured_turns_with_plain_ones(tmp_path: Path) -> None:
    result = run_bench(["metrics", "--quick"], tmp_path)
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout, "Per-turn overhead with metrics and turn-tagged logs on, instant engine, SQLite file, "
                 "100-message history (10 rounds of 20 turns of each kind, alternating)")  # fmt: skip
    assert rows[0] == "| metrics | p50 ms | p99 ms | p50 change |"
    number = r"\d+\.\d+"
    assert re.fullmatch(rf"\| off \| {number} \| {number} \|  \|", rows[2]), rows
    assert re.fullmatch(rf"\| on \| {number} \| {number} \| [+-]{number} % \|", rows[3]), rows
