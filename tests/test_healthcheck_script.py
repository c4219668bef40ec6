"""scripts/healthcheck.sh as cron runs it: an empty environment, another working directory.

The stack's settings reach the script the way an operator's do: through `.env` in
TEXTRACTD_HOME (the stack's folder here; the repo itself in production). CPU thresholds
above 100 % keep this shared box's CPU out of the verdict.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from daemon.config import ROOT
from devtools.stack import Stack, wait_for
from tests.fakes import program_state

SCRIPT = ROOT / "scripts" / "healthcheck.sh"


def run_from_cron(stack: Stack, *args: str, python: str = sys.executable
                  ) -> subprocess.CompletedProcess:
    """The script as cron runs it: `env -i` with cron's HOME and PATH, from `/`."""
    env = ["env", "-i", "HOME=/root", "PATH=/usr/bin:/bin", f"TEXTRACTD_HOME={stack.root}",
           f"TEXTRACTD_PYTHON={python}"]
    return subprocess.run([*env, str(SCRIPT), *args], cwd="/", capture_output=True,
                          text=True, timeout=90)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One stack for the module; each test puts back what it breaks."""
    stack = Stack(env={"WORKER_PROCESSES": "1"}).start()
    (stack.root / ".env").write_text(
        f"PORT={stack.port}\nWORKER_PROCESSES=1\nCPU_WARN=101\nCPU_CRIT=101\n")
    yield stack
    stack.discard()


def test_the_script_is_silent_and_exits_0_on_a_healthy_stack_under_cron(stack):
    result = run_from_cron(stack)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_script_passes_components_through_and_prints_one_line_per_problem(stack):
    (stack.root / ".env.bak").write_text((stack.root / ".env").read_text())
    try:
        with open(stack.root / ".env", "a") as env:
            env.write("DISK_WARN=1\nMEMORY_WARN=0.01\n")
        result = run_from_cron(stack, "disk", "memory", "redis")
    finally:
        (stack.root / ".env.bak").replace(stack.root / ".env")

    lines = result.stdout.splitlines()
    assert result.returncode == 1
    assert [line.split(":")[0] for line in lines] == ["WARNING disk", "WARNING memory"]


def test_the_script_names_a_program_supervisord_gave_up_on(stack):
    stack.supervisorctl("stop", "api")
    # Someone else took the api's port: the api cannot bind, exits at start, and
    # supervisord gives up after its start retries (FATAL). The subject is the check, not
    # supervisord's timing: on a loaded box the api can take longer than the shipped
    # startsecs to fail, so this stack's copy gives it a sure margin and fewer retries.
    conf = stack.root / "supervisord.conf"
    shipped = conf.read_text()
    head, _, api = shipped.partition("[program:api]")
    api = re.sub(r"(?m)^startsecs=.*$", "startsecs=8", api, count=1)
    api = re.sub(r"(?m)^startretries=.*$", "startretries=1", api, count=1)
    conf.write_text(f"{head}[program:api]{api}")
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT only
    squatter.bind(("127.0.0.1", stack.port))
    squatter.listen()
    try:
        stack.supervisorctl("reread")
        stack.supervisorctl("update", "api", timeout=120)  # restarts it with the copy
        wait_for(lambda: program_state(stack, "api") == "FATAL", 60, "the api to end FATAL")
        # supervisord does not retry a FATAL program: with the port free again the api
        # check is refused at once, not timed out (3 s) by a listener that never answers.
        squatter.close()
        result = run_from_cron(stack, "supervisor", "api")
    finally:
        squatter.close()
        # Back to the shipped copy: `update` restarts the api with it at once, where
        # `start` would block for the copy's whole 8 s startsecs.
        conf.write_text(shipped)
        stack.supervisorctl("reread")
        stack.supervisorctl("update", "api", timeout=120)
        wait_for(stack.healthy, 60, "the api back")

    lines = result.stdout.splitlines()
    assert result.returncode == 2
    assert any(line.startswith("CRITICAL supervisor: api is FATAL") for line in lines), lines
    assert any(line.startswith("CRITICAL api: http://127.0.0.1:") and "does not answer" in line
               for line in lines), lines


def test_the_script_reports_critical_redis_when_it_is_stopped(stack):
    stack.supervisorctl("stop", "redis")
    try:
        started = time.monotonic()
        result = run_from_cron(stack)
        took = time.monotonic() - started
    finally:
        stack.supervisorctl("start", "redis")

    lines = result.stdout.splitlines()
    assert result.returncode == 2
    assert lines[0].startswith("CRITICAL redis: cannot read Redis at unix://")
    assert all(line.split()[0] in ("CRITICAL", "WARNING", "UNKNOWN") for line in lines)
    assert "UNKNOWN workers: cannot tell while Redis is unreachable" in lines
    print(f"\nhealthcheck.sh with Redis stopped: exit 2 in {took:.1f} s, {len(lines)} lines")


def test_the_script_is_unknown_when_its_python_cannot_run_the_checks(stack, tmp_path):
    # An interpreter without the project's packages (-S: no site-packages), and one that
    # just fails: exit 1 from either must not read as WARNING.
    bare = tmp_path / "python-without-packages"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    missing = run_from_cron(stack, python=str(bare))
    failing = run_from_cron(stack, python="/bin/false")

    assert missing.returncode == 3
    assert missing.stdout.startswith("UNKNOWN healthcheck: cannot load the checks with")
    assert failing.returncode == 3
    assert failing.stdout == "UNKNOWN healthcheck: the checks exited with status 1 and no " \
                             "verdict\n"


def test_help_prints_usage_and_exits_0_without_running_the_checks(tmp_path):
    # A python that leaves a mark when run: asking for help must not start the checks.
    marker = tmp_path / "python-ran"
    python = tmp_path / "python-that-marks"
    python.write_text(f"#!/bin/sh\ntouch {marker}\nexit 3\n")
    python.chmod(0o755)
    env = ["env", "-i", "HOME=/root", "PATH=/usr/bin:/bin", f"TEXTRACTD_HOME={tmp_path}",
           f"TEXTRACTD_PYTHON={python}"]
    answers = [subprocess.run([*env, str(SCRIPT), *args], cwd="/", capture_output=True,
                              text=True, timeout=30)
               for args in (["--help"], ["-h"], ["redis", "--help"])]

    for answer in answers:
        assert (answer.returncode, answer.stderr) == (0, "")
        assert answer.stdout.startswith("usage: scripts/healthcheck.sh [-h|--help] "
                                        "[COMPONENT ...]\n")
        assert "exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN" in answer.stdout
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["python-that-marks"]
