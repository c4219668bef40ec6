"""Every script answers --help: usage on stdout, exit 0, and nothing else happens.

Each runs in a fresh copy of the working tree, with the programs a set-up or a start would
call (apt-get, pip, supervisord, redis-server, pytest) replaced by recorders first on PATH:
a help that installed, started or wrote anything shows up as a call or a new file.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.test_packaging import calls, recorder
from tests.test_setup_live import copy_working_tree

SCRIPTS = ["scripts/run", "scripts/test", "scripts/bench", "scripts/docker-entrypoint",
           "scripts/lock", "scripts/screenshot"]
WATCHED = ["apt-get", "pip", "pip3", "supervisord", "supervisorctl", "redis-server", "pytest"]


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clone")
    copy_working_tree(root)
    return root


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_a_script_asked_for_help_prints_usage_and_does_nothing_else(
    clone: Path, tmp_path: Path, script: str, flag: str,
) -> None:
    log = tmp_path / "calls.jsonl"
    for name in WATCHED:
        recorder(tmp_path / "bin", name, log)
    before = tree(clone)
    env = {k: v for k, v in os.environ.items() if k not in {"API_KEY", "ROLE", "REDIS_URL"}}
    result = subprocess.run(
        [str(clone / script), flag], cwd=tmp_path,
        env={**env, "PATH": f"{tmp_path / 'bin'}:{env['PATH']}",
             "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("usage: "), result.stdout
    assert script.removeprefix("scripts/") in result.stdout.splitlines()[0] or (
        script == "scripts/docker-entrypoint" and "docker run" in result.stdout)
    assert calls(log) == [], "asking for help ran a set-up or start-up program"
    assert tree(clone) == before, "asking for help wrote files"
