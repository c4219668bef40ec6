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


# --- the textractd command ----------------------------------------------------------------
TEXTRACTD = [[], ["extract"], ["health"], ["smoke"], ["bench"]]


def run_textractd(sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess:
    """`textractd ARGS` as its console script runs it (setup.cfg: daemon.cli.main:main)."""
    code = "import sys; from daemon.cli.main import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], env=sandbox.env,
                          cwd=sandbox.home, capture_output=True, text=True, timeout=60)


def test_setup_cfg_installs_textractd_as_a_console_script_running_daemon_cli_main() -> None:
    import configparser

    from daemon.config import ROOT

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    scripts = cfg["options.entry_points"]["console_scripts"].split("\n")
    assert "textractd = daemon.cli.main:main" in [s.strip() for s in scripts]


@pytest.mark.parametrize("command", TEXTRACTD, ids=lambda c: " ".join(["textractd", *c]))
def test_every_textractd_command_answers_help_with_its_usage_and_exits_0_untouched(
        sandbox: Sandbox, command: list[str]) -> None:
    done = run_textractd(sandbox, *command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: "), done.stdout
    assert done.stderr == ""
    assert_no_log_line(done.stdout)
    sandbox.assert_untouched()


def test_textractd_help_lists_every_command_and_extracts_help_its_exit_codes(
        sandbox: Sandbox) -> None:
    listing = run_textractd(sandbox, "--help").stdout
    for name in ("extract", "health", "smoke", "bench"):
        assert f"\n    {name} " in listing, name
    assert "not installed" in listing  # bench says it needs a checkout
    extract = run_textractd(sandbox, "extract", "--help").stdout
    assert extract.startswith("usage: textractd extract ")
    for words in ("--jsonl FILE", "--resume", "--include GLOB", "--concurrency N",
                  "TEXTRACTD_URL", "0 all extracted, 1 some documents failed, 2 usage"):
        assert words in " ".join(extract.split()), words
    sandbox.assert_untouched()


def test_textractd_without_a_command_prints_its_usage_on_stderr_and_exits_2(
        sandbox: Sandbox) -> None:
    done = run_textractd(sandbox)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("usage: textractd ")
    assert run_textractd(sandbox, "--version").stdout == f"textractd {__version__}\n"
    sandbox.assert_untouched()


def test_the_old_import_of_the_programs_command_line_still_works() -> None:
    from daemon.cli import parse_command_line
    from daemon.cli.program import parse_command_line as moved

    assert parse_command_line is moved
