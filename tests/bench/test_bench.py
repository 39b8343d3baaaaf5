"""`kortana bench` as its user runs it: the cheapest section prints its tables, a wrong section name is refused,
and the sections that drive the test fakes say in one line when an installation has none."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import app
from tests.helpers import child_environment

PACKAGE = Path(app.__file__).resolve().parent


def run_bench(args: list[str], cwd: Path, python_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    path = {} if python_path is None else {"PYTHONPATH": str(python_path)}
    return subprocess.run(
        [sys.executable, "-m", "app", "bench", *args],
        cwd=cwd,
        env=child_environment("PYTHONPATH", **path),
        capture_output=True,
        text=True,
        timeout=180,
    )


def table(output: str, title: str) -> list[str]:
    """The lines of the table under `### title`: header, rule, rows."""
    lines = output.splitlines()
    start = lines.index(f"### {title}") + 2
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_the_storage_section_prints_its_tables_on_a_quick_run(tmp_path: Path) -> None:
    result = run_bench(["storage", "--quick"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Machine: ")

    overhead = table(result.stdout, "Per-turn overhead, instant engine, SQLite file (200 turns each)")
    assert overhead[0] == (
        "| stored messages | Kor'tana p50 ms | Kor'tana p99 ms | plain sqlite3 p50 ms | plain sqlite3 p99 ms |"
    )
    assert [row.split(" | ")[0] for row in overhead[2:]] == ["| 100", "| 10,000", "| 100,000"]
    number = r"\d+\.\d+"
    for row in overhead[2:]:
        assert re.fullmatch(rf"\| [\d,]+ \| {number} \| {number} \| {number} \| {number} \|", row), row
    assert re.search(r"^100,000-message history vs 100-message history, p50: \d+\.\d\d×$", result.stdout, re.M)

    throughput = table(result.stdout, "Throughput")
    assert throughput[0] == "| concurrent conversations | turns | turns/s |"
    assert re.fullmatch(r"\| 100 \| 500 \| [\d,]+ \|", throughput[2]), throughput
    assert "Local brain" not in result.stdout and "PostgreSQL" not in result.stdout, "only the section named runs"


def test_the_settings_section_compares_checked_turns_with_plain_ones(tmp_path: Path) -> None:
    result = run_bench(["settings", "--quick"], tmp_path)
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout, "Per-turn overhead with server settings and limits checked, instant engine, "
                 "100-message history (10 alternating rounds of 20 turns each)")  # fmt: skip
    assert rows[0] == "| database | plain p50 ms | plain p99 ms | checked p50 ms | checked p99 ms | p50 change |"
    number = r"\d+\.\d+"
    four_times = rf"{number} \| {number} \| {number} \| {number}"
    assert re.fullmatch(rf"\| SQLite file \| {four_times} \| [+-]{number} % \|", rows[2]), rows
    assert "PostgreSQL skipped" in result.stdout


def test_an_unknown_section_is_refused_in_one_line_naming_it(tmp_path: Path) -> None:
    result = run_bench(["storage", "failvoer"], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "failvoer" in lines[0] and "failover" in lines[0], result.stderr
    assert "###" not in result.stdout, "nothing runs"


def test_sections_that_drive_the_test_fakes_say_so_where_there_are_none(tmp_path: Path) -> None:
    installed = tmp_path / "site-packages"  # the package alone, as an installation without the source tree has it
    shutil.copytree(PACKAGE, installed / "app", ignore=shutil.ignore_patterns("__pycache__"))
    result = run_bench(["failover", "discord"], tmp_path, python_path=installed)
    assert result.returncode == 0, result.stderr
    skipped = [line for line in result.stdout.splitlines() if "section skipped" in line]
    assert [line.split(" section")[0] for line in skipped] == ["(failover", "(discord"], result.stdout
    assert all("run it from a source checkout" in line for line in skipped), skipped
    assert "###" not in result.stdout


def test_the_hub_section_compares_our_download_with_the_librarys_on_a_quick_run(tmp_path: Path) -> None:
    result = run_bench(["hub", "--quick"], tmp_path)
    assert result.returncode == 0, result.stderr
    if "(hub section skipped" in result.stdout:
        return  # no bundled model here to serve
    title = next(line[4:] for line in result.stdout.splitlines() if line.startswith("### Download from the fake Hub"))
    rows = table(result.stdout, title)[2:]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [
        "hf_hub_download directly",
        "our fetch_model (tqdm bar, as on a terminal)",
        "our fetch_model (a log line every 5 s)",
    ]
    startup = table(result.stdout, "Start-up with the model cached (9 runs each)")[2:]
    assert len(startup) == 4 and "Hub gone" in startup[-1]
