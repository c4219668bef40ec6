"""The programs' command line: --help and --version answer and exit, with no side effect.

Each run gets a Redis address that is a bare listening socket (a tripwire: any connection
attempt stays in its accept queue, where a closed port would only refuse it unseen), a
free PORT, an API key (so an api that ignored its arguments would start, not refuse) and
an empty TEXTRACTD_HOME that must stay empty (no logs/, no var/spool/).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon import __version__
from devtools.stack import free_port

PROGRAMS = ["daemon.api", "daemon.pool"]
# Named in each program's usage: the ones an operator reaches for first.
NAMED = {"daemon.api": ["PORT", "HOST", "API_KEY", "REDIS_URL", "MAX_CONTENT_LENGTH"],
         "daemon.pool": ["WORKER_PROCESSES", "REDIS_URL", "JOB_TIMEOUT", "WORKER_MAX_MEMORY_MB"]}


@dataclass
class Sandbox:
    home: Path
    port: int
    tripwire: socket.socket

    @property
    def env(self) -> dict[str, str]:
        redis_port = self.tripwire.getsockname()[1]
        return {**os.environ, "TEXTRACTD_HOME": str(self.home), "PORT": str(self.port),
                "HOST": "127.0.0.1", "API_KEY": "a-key-so-the-api-would-start",
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "WORKER_PROCESSES": "1"}

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([sys.executable, "-m", program, *args], env=self.env,
                                  cwd=self.home, capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"python -m {program} {' '.join(args)} did not exit: it started")

    def assert_untouched(self) -> None:
        """No Redis connection was attempted, PORT is free, nothing was written."""
        with pytest.raises(BlockingIOError):
            self.tripwire.accept()  # a connection attempt would be waiting here
        with socket.socket() as s:
            s.bind(("127.0.0.1", self.port))  # raises if something still holds it
        assert list(self.home.iterdir()) == []


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    home = tmp_path / "home"
    home.mkdir()
    with socket.socket() as tripwire:
        tripwire.bind(("127.0.0.1", 0))
        tripwire.listen(8)
        tripwire.setblocking(False)
        yield Sandbox(home, free_port(), tripwire)


def assert_no_log_line(output: str) -> None:
    assert not [line for line in output.splitlines() if line.lstrip().startswith("{")], output


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("program", PROGRAMS)
def test_help_prints_the_usage_and_the_settings_and_exits_0_without_starting(
        sandbox: Sandbox, program: str, flag: str) -> None:
    done = sandbox.run(program, flag)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {program} [-h] [--version]\n")
    for name in NAMED[program]:
        assert f"\n  {name} " in done.stdout, name
    assert "TEXTRACTD_HOME" in done.stdout and "README.md" in done.stdout
    assert done.stderr == ""
    assert_no_log_line(done.stdout)
    sandbox.assert_untouched()


@pytest.mark.parametrize("program", PROGRAMS)
def test_version_prints_textractd_and_its_version_and_exits_0_without_starting(
        sandbox: Sandbox, program: str) -> None:
    done = sandbox.run(program, "--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"textractd {__version__}\n", "")
    sandbox.assert_untouched()


@pytest.mark.parametrize("args", [["--bogus"], ["--port", "80"], ["serve"]])
@pytest.mark.parametrize("program", PROGRAMS)
def test_an_unknown_option_exits_2_with_the_usage_on_stderr_and_starts_nothing(
        sandbox: Sandbox, program: str, args: list[str]) -> None:
    done = sandbox.run(program, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.startswith(f"usage: python -m {program} [-h] [--version]\n")
    assert f"unrecognized arguments: {' '.join(args)}" in done.stderr
    sandbox.assert_untouched()
