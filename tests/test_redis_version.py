"""Redis >= 7.0 or no start: the api and the pool refuse an older server, naming it.

The old server is a real process on a real socket (tests/fakes/old_redis.py) that answers
INFO as Redis 6.2.0 does; the supported one is the machine's redis-server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.api.app import EXIT_CONFIG
from daemon.config import Settings
from daemon.connection import RedisTooOld, connect, require_redis_version
from daemon.pool.slots import EXIT_BOOT_FAILED
from devtools.stack import free_port
from tests.fakes import FAKES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def old_redis() -> Iterator[str]:
    server = subprocess.Popen([sys.executable, str(FAKES / "old_redis.py"), "6.2.0"],
                              stdout=subprocess.PIPE, text=True)
    with server:  # closes its stdout pipe too
        try:
            port = int(server.stdout.readline())
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait(10)


def events(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def run_program(module: str, redis_url: str, home: Path) -> tuple[int, list[dict]]:
    env = {k: v for k, v in os.environ.items() if k not in {"ROLE", "API_KEY"}}
    env.update(REDIS_URL=redis_url, TEXTRACTD_HOME=str(home), PORT=str(free_port()),
               API_KEY="k" * 40, WORKER_PROCESSES="1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", module], env=env, cwd=home,
                            capture_output=True, text=True, timeout=60)
    return result.returncode, events(result.stdout + result.stderr)


def test_a_server_older_than_7_0_is_refused_with_its_version_named(old_redis: str) -> None:
    client = connect(Settings(redis_url=old_redis, redis_max_retries=0))
    with pytest.raises(RedisTooOld, match=r"version 6\.2\.0; textractd needs Redis >= 7\.0"):
        require_redis_version(client)


def test_the_machines_redis_7_passes_and_its_version_is_returned(redis_server) -> None:
    client = connect(Settings(redis_url=redis_server.url, redis_max_retries=0))
    version = require_redis_version(client)
    assert int(version.split(".")[0]) >= 7
    assert version == redis_server.client().info("server")["redis_version"]


def test_the_api_refuses_to_start_against_an_old_server(old_redis: str, tmp_path: Path) -> None:
    code, logged = run_program("daemon.api", old_redis, tmp_path)
    assert code == EXIT_CONFIG
    refused = [e for e in logged if e["event"] == "api.refused"]
    assert refused and "6.2.0" in refused[0]["reason"] and ">= 7.0" in refused[0]["reason"]
    assert refused[0]["level"] == "error"


def test_the_pool_refuses_to_start_against_an_old_server_before_any_child(
    old_redis: str, tmp_path: Path,
) -> None:
    code, logged = run_program("daemon.pool", old_redis, tmp_path)
    assert code == EXIT_BOOT_FAILED
    names = [e["event"] for e in logged]
    assert "pool.refused" in names and "child.started" not in names
    refused = next(e for e in logged if e["event"] == "pool.refused")
    assert "6.2.0" in refused["reason"]
