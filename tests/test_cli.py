"""The command line as a user meets it: `python -m app chat` scripted through stdin, and bad settings."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.helpers import child_environment


def run_kortana(args: list[str], cwd: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        input=stdin,
        cwd=cwd,
        env=child_environment(**{"BRAIN": "none", **env}),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_scripted_chat_answers_remembers_and_exits_zero(tmp_path: Path) -> None:
    database = tmp_path / "chat.db"
    url = f"sqlite+aiosqlite:///{database}"
    first = run_kortana(["chat"], tmp_path, "hello there\n/quit\n", DATABASE_URL=url)
    assert first.returncode == 0, first.stderr
    assert "hello there" in first.stdout  # the echo engine quotes the message
    assert str(database) in first.stderr, "start-up prints where the memory lives"

    second = run_kortana(["chat"], tmp_path, "/ping\n/reset\n", DATABASE_URL=url)
    assert second.returncode == 0, second.stderr
    assert "Database:" in second.stdout and "echo" in second.stdout
    assert "Forgot 2 messages" in second.stdout

    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_chat_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'memory.db'}"
    run_kortana(["chat"], tmp_path, "remember the blue door\n", DATABASE_URL=url)
    with sqlite3.connect(tmp_path / "memory.db") as connection:
        rows = connection.execute("SELECT role, content, engine FROM messages ORDER BY id").fetchall()
    assert rows[0] == ("user", "remember the blue door", None)
    assert rows[1][0] == "assistant" and rows[1][2] == "echo"


def test_a_bad_setting_stops_start_up_with_one_line_naming_it(tmp_path: Path) -> None:
    secret = "hf_" + "x" * 34
    for name, value in [
        ("HISTORY_TOKEN_BUDGET", "-5"),
        ("BRAIN_URL", "not a url"),
        ("HISTORY_SCOPE", "planet"),
        ("DATABASE_URL", "sqlite+aiosqlite://"),  # was a traceback from the migration
        ("RECALL_SHARE", "1.5"),
        ("SUMMARY_ENGINE", "gpt-4"),
        ("SUMMARY_MAX_TOKENS", "2000"),  # more than the memory share of the default budget
    ]:
        result = run_kortana(["chat"], tmp_path, "", **{name: value, "HF_TOKEN": secret})
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0], result.stderr
        assert secret not in result.stderr + result.stdout


def test_settings_come_from_a_dotenv_file_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HISTORY_SCOPE=nowhere\n")
    result = run_kortana(["chat"], tmp_path)
    assert result.returncode == 2 and "HISTORY_SCOPE" in result.stderr


def test_ctrl_c_ends_chat_at_once_even_while_it_waits_for_a_line(tmp_path: Path) -> None:
    chat = subprocess.Popen(
        [sys.executable, "-m", "app", "chat"],
        cwd=tmp_path,
        env=child_environment(BRAIN="none", DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in chat.stdout.readline()  # waiting for the user's first line now
        chat.send_signal(signal.SIGINT)
        assert chat.wait(timeout=5) == 130
    finally:
        chat.kill()
        chat.wait()


def test_db_upgrade_to_an_unknown_revision_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    result = run_kortana(["db", "upgrade", "no-such-revision"], tmp_path, DATABASE_URL=url)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"kortana: Cannot migrate the database at {tmp_path / 'k.db'}: "
        "CommandError: Can't locate revision identified by 'no-such-revision'"
    ]


def test_usage_shows_tokens_and_answers_per_day_server_and_engine(tmp_path: Path) -> None:
    database = tmp_path / "k.db"
    url = f"sqlite+aiosqlite:///{database}"
    assert run_kortana(["usage"], tmp_path, DATABASE_URL=url).stdout.strip() == "No answers in the last 7 days (UTC)."

    today = datetime.now(UTC).date()
    with sqlite3.connect(database) as connection:
        connection.executemany(
            "INSERT INTO token_usage (day, guild_id, user_id, engine, tokens, answers) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (str(today), 111, 1, "brain", 1200, 4),
                (str(today), 111, 2, "brain", 34, 1),  # another member: the same row of the table
                (str(today), 0, 1, "echo", 0, 2),
                (str(today - timedelta(days=1)), 222, 1, "huggingface", 500, 1),
                (str(today - timedelta(days=30)), 111, 1, "brain", 9999, 9),  # older than asked
            ],
        )
    result = run_kortana(["usage", "--days", "2"], tmp_path, DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.strip().splitlines()[2:]]
    assert rows == [
        [str(today), "DMs", "and", "terminal", "echo", "0", "2"],
        [str(today), "111", "brain", "1,234", "5"],
        [str(today - timedelta(days=1)), "222", "huggingface", "500", "1"],
        ["total", "1,734", "8"],
    ]


def test_usage_refuses_a_day_count_below_one(tmp_path: Path) -> None:
    result = run_kortana(["usage", "--days", "0"], tmp_path, DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    assert result.returncode == 2 and "--days: must be from 1" in result.stderr, result.stderr
