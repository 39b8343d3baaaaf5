"""BRAIN=module:attribute finds the user's module in the working directory without letting the files there
shadow a standard or installed module for the rest of the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import child_environment

PROBE = Path(__file__).parent / "workers" / "plugin_brain_probe.py"


def test_a_plugin_loads_from_the_working_directory_and_shadows_no_standard_module(tmp_path: Path) -> None:
    (tmp_path / "stringprep.py").write_text("open('shadowed', 'w').close()\n")
    (tmp_path / "brain_words.py").write_text("ANSWER = 'hello from my own brain'\n")  # a neighbour it imports
    (tmp_path / "my_brain.py").write_text(
        "import brain_words\n\nasync def brain(messages):\n    return brain_words.ANSWER\n"
    )
    env = child_environment()
    # -P: no working directory on the path from Python itself, as when the `kortana` script runs.
    result = subprocess.run(
        [sys.executable, "-P", str(PROBE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:5] == ["hello", "from", "my", "own", "brain"]
    assert result.stdout.split()[-1] == "False", "the working directory left on the import path"
    assert not (tmp_path / "shadowed").exists(), "a file in the working directory shadowed the standard library"


def test_python_dash_m_app_shadows_no_standard_module_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "getpass.py").write_text("open('shadowed', 'w').close()\n")  # the terminal imports getpass
    env = child_environment(BRAIN="none", DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    result = subprocess.run(
        [sys.executable, "-m", "app", "chat"], input="/quit\n", cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "shadowed").exists(), "`python -m app` let a file in the working directory shadow getpass"
