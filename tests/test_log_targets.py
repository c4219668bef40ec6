"""Where the programs' lines go: logs/*.log by default, supervisord's stdout on request.

`docker logs` reads a container's stdout; with LOG_TO_STDOUT=1 (the entrypoint's default)
supervisord must pass the api's and the workers' JSON lines there, each still naming its
program. The real thing: a supervisord stack whose stdout is a pipe, as under Docker.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.stack import Stack, wait_for
from tests.client import Client

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "scripts" / "lib.sh"
TARGETS = ["TEXTRACTD_REDIS_LOG", "TEXTRACTD_API_LOG", "TEXTRACTD_WORKERS_LOG",
           "TEXTRACTD_LOG_MAXBYTES"]


class PipeReader:
    """Drains a pipe in a thread (a full pipe would stall supervisord) and keeps its lines."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        with open(self.read_fd, encoding="utf-8", errors="replace") as pipe:
            for line in pipe:
                self.lines.append(line.rstrip("\n"))

    def json_lines(self) -> list[dict]:
        found = []
        for line in list(self.lines):
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    found.append(event)
        return found


@pytest.fixture
def stdout_stack() -> Iterator[tuple[Stack, PipeReader]]:
    reader = PipeReader()
    stack = Stack(env={"LOG_TO_STDOUT": "1", "WORKER_PROCESSES": "1"}, stdout=reader.write_fd)
    try:
        stack.start()
        os.close(reader.write_fd)  # supervisord holds its own copy
        yield stack, reader
    finally:
        stack.stop()
        shutil.rmtree(stack.root, ignore_errors=True)


def test_with_log_to_stdout_the_api_and_workers_json_lines_come_out_of_supervisord(
    stdout_stack: tuple[Stack, PipeReader],
) -> None:
    stack, reader = stdout_stack
    reply = Client(stack).upload("table.csv", b"name,count\nfox,3\n", wait=60)
    assert reply.status == 200 and reply.json()["state"] == "done", reply.body
    job_id = reply.json()["id"]

    def the_job_from_both_programs() -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        for event in reader.json_lines():
            if event.get("job_id") == job_id:
                seen.setdefault(event.get("process", "?"), []).append(event["event"])
        # The workers program's lines say "pool" (the master) or "worker" (a child).
        return seen if {"api", "worker"} <= set(seen) and "job.done" in seen["worker"] else {}

    seen = wait_for(the_job_from_both_programs, 30, "the job's lines on supervisord's stdout")
    assert "http.request" in seen["api"] and "job.done" in seen["worker"]
    starts = {(e.get("process"), e["event"]) for e in reader.json_lines()}
    assert {("api", "api.starting"), ("pool", "pool.started"),
            ("worker", "child.started")} <= starts
    # Every JSON line names its program; nothing went to the files instead.
    assert all(e.get("process") for e in reader.json_lines())
    for program in ("api", "workers", "redis"):
        assert not (stack.root / "logs" / f"{program}.log").exists(), program


def export_log_targets(env: dict[str, str], cwd: Path) -> dict[str, str]:
    script = (f"set -euo pipefail; source {shlex.quote(str(LIB))}; export_log_targets; "
              "python3 -c 'import json, os; print(json.dumps(dict(os.environ)))'")
    base = {k: v for k, v in os.environ.items() if k != "LOG_TO_STDOUT"}
    result = subprocess.run(["bash", "-c", script], cwd=cwd, env={**base, **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    exported = json.loads(result.stdout)
    return {name: exported[name] for name in TARGETS}


def test_by_default_each_program_keeps_its_rotated_file_under_logs(tmp_path: Path) -> None:
    assert export_log_targets({}, tmp_path) == {
        "TEXTRACTD_REDIS_LOG": f"{tmp_path}/logs/redis.log",
        "TEXTRACTD_API_LOG": f"{tmp_path}/logs/api.log",
        "TEXTRACTD_WORKERS_LOG": f"{tmp_path}/logs/workers.log",
        "TEXTRACTD_LOG_MAXBYTES": "20MB",
    }
    assert export_log_targets({"LOG_TO_STDOUT": "0"}, tmp_path)["TEXTRACTD_API_LOG"] == (
        f"{tmp_path}/logs/api.log")


def test_log_to_stdout_sends_every_program_to_stdout_unrotated(tmp_path: Path) -> None:
    assert export_log_targets({"LOG_TO_STDOUT": "1"}, tmp_path) == {
        "TEXTRACTD_REDIS_LOG": "/dev/stdout",
        "TEXTRACTD_API_LOG": "/dev/stdout",
        "TEXTRACTD_WORKERS_LOG": "/dev/stdout",
        "TEXTRACTD_LOG_MAXBYTES": "0",
    }


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """What the entrypoint needs, copied, so its var/ and logs/ land in a temp dir."""
    (tmp_path / "scripts").mkdir()
    for name in ["scripts/docker-entrypoint", "scripts/lib.sh", "supervisord.conf"]:
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize(("given", "expected"), [(None, "/dev/stdout"), ("0", "logs/api.log")])
def test_the_container_logs_to_stdout_unless_told_otherwise(
    app: Path, given: str | None, expected: str,
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"LOG_TO_STDOUT", "ROLE"}}
    if given is not None:
        env["LOG_TO_STDOUT"] = given
    # With arguments the entrypoint runs them, in the environment supervisord would get.
    result = subprocess.run(
        [str(app / "scripts" / "docker-entrypoint"), "bash", "-c", "echo $TEXTRACTD_API_LOG"],
        env={**env, "API_KEY": "k" * 40}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (expected if expected.startswith("/") else
                                     f"{app}/{expected}")
