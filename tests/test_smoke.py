"""The smoke client checks a real running stack from outside."""

from __future__ import annotations

import subprocess
import sys

from devtools.stack import wait_for


def smoke(stack, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "daemon.health.smoke", "--url", stack.url,
         f"--api-key={key or stack.api_key}", *args],  # a key may begin with "-"
        capture_output=True, text=True, timeout=120)


def test_every_smoke_check_passes_on_a_healthy_stack(shared_stack) -> None:
    result = smoke(shared_stack, "--test", "all")
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout
    assert [line.split()[:2] for line in lines] == [
        ["PASS", "health"], ["PASS", "detailed"], ["PASS", "metrics"], ["PASS", "convert"],
        ["PASS", "circuit-breaker"]]


def test_a_wrong_key_fails_the_checks_that_need_one(shared_stack) -> None:
    result = smoke(shared_stack, key="wrong")
    assert result.returncode == 1
    failed = {line.split()[1].rstrip(":") for line in result.stdout.splitlines()
              if line.startswith("FAIL")}
    assert failed == {"detailed", "metrics", "convert", "circuit-breaker"}


def test_a_stack_without_redis_fails_detailed_but_not_health(make_stack) -> None:
    stack = make_stack(env={"WORKER_PROCESSES": "1"})
    stack.supervisorctl("stop", "redis")
    wait_for(lambda: not (stack.root / "var" / "redis.sock").exists(), 30, "redis to stop")
    assert smoke(stack, "--test", "health").returncode == 0
    detailed = smoke(stack, "--test", "detailed")
    assert detailed.returncode == 1 and detailed.stdout.startswith("FAIL detailed")
