"""Health checks: the CLI against real redis-servers and stacks, /health/detailed, /status.

The HTTP routes are served by `MonitoredApi`: a second real api process (`python -m
daemon.api`) started beside the stack, against the stack's Redis and workers, with the
settings a test needs. CPU thresholds are set above 100 % where a test needs a calm
verdict: the CPU of this shared 2-core box is not the subject.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from daemon.health.facts import FAMILIES
from daemon.health.host import SATURATED_AND_LAGGING
from daemon.store import breaker_key
from devtools.stack import Stack, free_port, wait_for
from tests.fakes import PDF, pool_children, submit, wait_final

CALM_CPU = {"CPU_WARN": "101", "CPU_CRIT": "101"}
FIRST_LINE = re.compile(r"^TEXTRACTD (OK|WARNING|CRITICAL|UNKNOWN) - (.+?)(?: \| (.*))?$")
PERF_ITEM = re.compile(r"^'[^'=]+'=-?\d+(\.\d+)?(e[-+]?\d+)?(s|ms|us|%|B|KB|MB|TB|c)?"
                       r"(;[^;\s]*){0,4}$")

class MonitoredApi:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.api_key = env["API_KEY"]
        self.env = {**env, "PORT": str(self.port)}
        self.log = log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MonitoredApi:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "daemon.api"],
                                            env=self.env, stdout=out, stderr=out)
        wait_for(lambda: self.get("/health", key=False)[0] == 200, 30, "the monitored api")
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def get(self, path: str, headers: dict | None = None, key: bool = True
            ) -> tuple[int, dict[str, str], bytes]:
        all_headers = {"X-API-Key": self.api_key} if key else {}
        req = urllib.request.Request(self.url + path, headers={**all_headers, **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as reply:
                return reply.status, dict(reply.headers), reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, path: str) -> tuple[int, dict]:
        status, _headers, body = self.get(path)
        return status, json.loads(body)


def monitored(stack: Stack, **env: str) -> MonitoredApi:
    return MonitoredApi({**stack.env, **CALM_CPU, **env}, stack.root / "logs" / "mon-api.log")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon.health", *args], env=env, cwd="/",
                          capture_output=True, text=True, timeout=60)


def parse(output: str) -> tuple[str, str, list[str], list[str]]:
    """(status, summary, perfdata items, problem lines) of the plugin output."""
    first, *rest = output.strip().splitlines()
    match = FIRST_LINE.match(first)
    assert match, first
    perf = (match.group(3) or "").split()
    assert all(PERF_ITEM.match(p) for p in perf), perf
    return match.group(1), match.group(2), perf, rest


def server_env(server, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": server.url, "TEXTRACTD_HOME": str(tmp_path),
            "WORKER_PROCESSES": "1", **extra}


# --- the CLI against a bare redis-server ------------------------------------------------
REDIS_SIDE = ("redis", "queue", "breaker", "disk", "memory", "tempfiles")


def test_the_cli_says_ok_with_perfdata_and_exits_0_when_redis_and_the_host_are_fine(
        redis_server, tmp_path):
    result = cli(server_env(redis_server, tmp_path), *REDIS_SIDE)

    status, summary, perf, problems = parse(result.stdout)
    assert (result.returncode, status, problems) == (0, "OK", [])
    assert summary.startswith("all 6 checks OK")
    labels = {p.split("=")[0].strip("'") for p in perf}
    assert {"redis_up", "redis_latency", "queue_depth", "breakers_open", "memory",
            "temp_size"} <= labels
    as_json = json.loads(cli(server_env(redis_server, tmp_path), "redis", "--json").stdout)
    assert as_json["status"] == "ok" and as_json["exit_code"] == 0
    assert as_json["checks"]["redis"]["figures"]["aof_enabled"] is True


def test_the_cli_is_critical_and_names_redis_when_redis_is_stopped(redis_server, tmp_path):
    redis_server.stop()
    started = time.monotonic()
    result = cli(server_env(redis_server, tmp_path), *REDIS_SIDE)
    took = time.monotonic() - started

    status, summary, _perf, problems = parse(result.stdout)
    assert (result.returncode, status) == (2, "CRITICAL")
    assert problems[0].startswith("CRITICAL redis: cannot read Redis at unix://")
    assert "UNKNOWN queue: cannot tell while Redis is unreachable" in problems
    assert summary.startswith("redis CRITICAL")
    assert took < 15
    print(f"\nCLI with Redis stopped: exit 2 in {took:.1f} s: {problems[0]}")


def test_a_low_disk_threshold_makes_the_cli_warn(redis_server, tmp_path):
    result = cli(server_env(redis_server, tmp_path, DISK_WARN="1", DISK_CRIT="100"), "disk")

    status, _summary, perf, problems = parse(result.stdout)
    assert (result.returncode, status) == (1, "WARNING")
    assert len(problems) == 1 and problems[0].startswith("WARNING disk: var+logs (")
    assert any(p.startswith("'disk_var+logs'=") and p.endswith(";1;100;0;100") for p in perf)


def test_bad_arguments_and_bad_settings_are_unknown_not_critical(redis_server, tmp_path):
    bogus = cli(server_env(redis_server, tmp_path), "redis", "bogus")
    bad_setting = cli(server_env(redis_server, tmp_path, CPU_WARN="lots"), "cpu")
    bad_flag = cli(server_env(redis_server, tmp_path), "--nope")

    assert bogus.returncode == bad_setting.returncode == bad_flag.returncode == 3
    assert bogus.stdout.startswith("TEXTRACTD UNKNOWN - unknown component bogus")
    assert bad_setting.stdout.startswith("TEXTRACTD UNKNOWN - CPU_WARN='lots' is not")
    assert bad_flag.stdout.startswith("TEXTRACTD UNKNOWN - unrecognized arguments")


def test_the_cli_reads_the_load_average_for_a_minute_and_measures_a_shorter_cpu_window(
        redis_server, tmp_path):
    default = json.loads(cli(server_env(redis_server, tmp_path), "cpu", "--json").stdout)
    started = time.monotonic()
    short = json.loads(cli(server_env(redis_server, tmp_path, CPU_WINDOW="2"), "cpu",
                           "--json").stdout)
    took = time.monotonic() - started
    too_short = cli(server_env(redis_server, tmp_path, CPU_WINDOW="0.5"), "cpu")

    figures = default["checks"]["cpu"]["figures"]
    assert (figures["measured"], figures["window_s"]) == ("load1_per_core", 60.0)
    figures = short["checks"]["cpu"]["figures"]
    assert figures["measured"] == "cpu_times" and 2 <= figures["window_s"] < 3, figures
    assert took >= 2  # the window was measured, not read off an average
    assert too_short.returncode == 3
    assert too_short.stdout.startswith("TEXTRACTD UNKNOWN - CPU_WINDOW must be at least 1")


def test_one_open_breaker_is_a_warning_and_every_breaker_open_is_critical(
        redis_server, tmp_path):
    client = redis.Redis.from_url(redis_server.url)
    now = time.time()
    client.hset(breaker_key("pdf"), mapping={"state": "open", "opened_at": now,
                                              "consecutive_failures": 3})
    one = cli(server_env(redis_server, tmp_path), "breaker")
    for family in FAMILIES:
        client.hset(breaker_key(family), mapping={"state": "open", "opened_at": now})
    every = cli(server_env(redis_server, tmp_path), "breaker")

    assert one.returncode == 1
    assert re.fullmatch(r"WARNING breaker: open: pdf \(trial in 1[12]\d s\); their jobs wait "
                        r"in the queue", parse(one.stdout)[3][0])
    assert every.returncode == 2
    assert parse(every.stdout)[3][0].startswith("CRITICAL breaker: open: ocr (")


# --- against whole stacks ---------------------------------------------------------------
def test_a_healthy_stack_passes_everything_and_stopped_workers_turn_critical(make_stack):
    stack = make_stack(env={"WORKER_PROCESSES": "2"})
    env = {**stack.env, **CALM_CPU}
    healthy = cli(env, "all")
    with monitored(stack) as api:
        detailed_status, detailed = api.json("/health/detailed")
        _status, headers, _body = api.get("/health/detailed")
        no_key = api.get("/health/detailed", key=False)[0]
        status_code, status = api.json("/status")

        stack.supervisorctl("stop", "workers")
        stopped_at = time.monotonic()
        found = wait_for(lambda: (r := cli(env, "workers")).returncode == 2 and r, 30,
                         "the workers check to turn critical")
        critical_after = time.monotonic() - stopped_at
        supervisor = cli(env, "supervisor")
        failing_status, failing = api.json("/health/detailed")

    state, summary, _perf, _problems = parse(healthy.stdout)
    assert (healthy.returncode, state) == (0, "OK"), healthy.stdout
    assert summary.startswith("all 11 checks OK")
    assert (detailed_status, detailed["status"]) == (200, "pass"), detailed
    assert headers["Content-Type"].startswith("application/health+json")
    assert set(detailed["checks"]) == {"redis", "workers", "api", "chores", "disk", "memory",
                                       "cpu", "tempfiles", "queue", "breaker", "supervisor"}
    assert detailed["checks"]["workers"][0]["figures"]["live"] == 2
    assert no_key == 401
    assert status_code == 200
    assert status["workers"] == {"live": 2, "busy": 0, "idle": 2, "expected_here": 2}
    assert status["breakers"] == dict.fromkeys(FAMILIES, "closed")
    assert status["queue"]["depth"] == 0 and status["uptime_s"] > 0
    assert status["version"] and status["redis"]["connected"] is True

    assert parse(found.stdout)[3] == [
        "CRITICAL workers: no worker child alive (0/2 heartbeats): jobs are not processed"
        " (0/2 children alive here, 0 busy)"]
    assert critical_after < 10 + 5  # the heartbeat TTL, plus a poll's margin
    assert supervisor.returncode == 2
    assert "CRITICAL supervisor: workers is STOPPED" in supervisor.stdout
    assert failing_status == 503 and failing["status"] == "fail"
    assert failing["checks"]["workers"][0]["status"] == "fail"
    print(f"\nworkers CRITICAL {critical_after:.1f} s after supervisorctl stop workers")


def test_redis_stopped_makes_health_detailed_503_while_health_stays_200(make_stack):
    stack = make_stack(env={"WORKER_PROCESSES": "1"})
    with monitored(stack) as api:
        stack.supervisorctl("stop", "redis")
        started = time.monotonic()
        detailed_status, detailed = api.json("/health/detailed")
        took = time.monotonic() - started
        liveness = api.get("/health", key=False)[0]
        status_code, status = api.json("/status")
        metrics_code, metrics = api.json("/metrics")
        result = cli({**stack.env, **CALM_CPU}, "all")
        # Back before the api and the stack stop: stopping with Redis gone spends seconds
        # in their retries, the subject of other tests.
        stack.supervisorctl("start", "redis")

    assert detailed_status == 503 and detailed["status"] == "fail"
    assert detailed["checks"]["redis"][0]["status"] == "fail"
    assert detailed["checks"]["queue"][0]["status"] == "warn"  # unknown: cannot tell
    assert took < 10
    assert liveness == 200
    assert status_code == 503 and status["redis"]["connected"] is False
    assert metrics_code == 200 and metrics["redis"] == {"connected": False}
    assert result.returncode == 2
    assert parse(result.stdout)[3][0].startswith("CRITICAL redis: cannot read Redis")
    print(f"\n/health/detailed answered 503 in {took:.2f} s with Redis stopped")


def test_an_open_breaker_shows_in_the_cli_health_detailed_status_and_metrics(
        make_stack, tools):
    from prometheus_client.parser import text_string_to_metric_families

    tools.mode("pdftotext", "segv")  # broken machinery: each distinct document counts
    stack = make_stack(env=tools.env(WORKER_PROCESSES=1, MAX_ATTEMPTS=1,
                                     CIRCUIT_BREAKER_RECOVERY_TIMEOUT=300))
    with monitored(stack) as api:
        distinct = [PDF.read_bytes() + f"\n% copy {i}\n".encode() for i in range(3)]
        failed = [wait_final(stack, submit(stack, pdf, "copy.pdf"), 30) for pdf in distinct][-1]
        result = cli({**stack.env, **CALM_CPU}, "breaker", "queue")
        detailed_status, detailed = api.json("/health/detailed")
        _code, status = api.json("/status")
        _code, _headers, body = api.get("/metrics?format=prometheus")

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body.decode())
               for s in family.samples}
    assert failed["state"] == "failed" and failed["attempts"] == 1
    assert result.returncode == 1
    breaker_line, queue_line = parse(result.stdout)[3]
    assert re.match(r"WARNING breaker: open: pdf \(trial in (2\d\d|300) s\)", breaker_line)
    assert queue_line.startswith("WARNING queue: 3 dead letter(s), the newest 0 min ago")
    assert detailed_status == 200 and detailed["status"] == "warn"
    assert detailed["checks"]["breaker"][0]["status"] == "warn"
    assert detailed["checks"]["breaker"][0]["figures"]["families"]["pdf"]["total_failures"] == 3
    assert status["breakers"]["pdf"] == "open" and status["breakers"]["office"] == "closed"
    assert samples[("textractd_breaker_state", (("family", "pdf"), ("state", "open")))] == 1
    assert samples[("textractd_breaker_state", (("family", "pdf"), ("state", "closed")))] == 0
    assert samples[("textractd_breaker_failures_total", (("family", "pdf"),))] == 3
    assert samples[("textractd_breaker_opened_total", (("family", "pdf"),))] == 1
    assert samples[("textractd_queue_dead_letters", ())] == 3


def test_a_job_held_past_its_deadline_by_a_wedged_master_is_reported(make_stack, tools):
    tools.mode("pdftotext", "hang")
    # A short DEADLINE_GRACE: the report comes seconds after the deadline, not ten.
    stack = make_stack(env=tools.env(WORKER_PROCESSES=2, JOB_TIMEOUT=3, SHUTDOWN_TIMEOUT=3,
                                     DEADLINE_GRACE=2))
    env = {**stack.env, **CALM_CPU}
    submit(stack, PDF)
    wait_for(tools.running, 20, "a child to run the hanging tool")
    master = stack.program_pid("workers")
    os.kill(master, signal.SIGSTOP)  # nobody enforces the deadline now
    try:
        stopped_at = time.monotonic()
        found = wait_for(lambda: (r := cli(env, "workers", "queue")).returncode and r, 40,
                         "the held job to be reported")
        reported_after = time.monotonic() - stopped_at
    finally:
        tools.mode("pdftotext", "pass")
        os.kill(master, signal.SIGCONT)

    problems = parse(found.stdout)[3]
    # Today a busy child writes no heartbeat, so the job looks abandoned (queue WARNING);
    # a heartbeat written during jobs makes it "past JOB_TIMEOUT" (workers CRITICAL).
    assert any("no sign of life" in p or "past JOB_TIMEOUT" in p for p in problems), problems
    assert reported_after < 3 + 2 + 10  # deadline + grace + heartbeat TTL
    print(f"\nheld job reported {reported_after:.1f} s after the master stopped: {problems}")


def test_a_child_killed_by_a_signal_makes_workers_warn_and_counts_as_a_restart(make_stack):
    stack = make_stack(env={"WORKER_PROCESSES": "2"})
    env = {**stack.env, **CALM_CPU}
    child = pool_children(stack)[0]
    child.kill()  # as the kernel's OOM killer would

    def replaced_and_reported() -> dict | None:
        workers = json.loads(cli(env, "workers", "--json").stdout)["checks"]["workers"]
        return workers if workers["figures"]["restarts"] and workers["figures"][
            "live"] == 2 else None

    workers = wait_for(replaced_and_reported, 30, "the killed child replaced and counted")

    assert workers["status"] == "warning"
    assert workers["message"].startswith("children died in the last 15 min: killed x1")
    assert workers["figures"]["restarts"] == {"killed": 1}


# --- a busy CPU --------------------------------------------------------------------------
# The shipped thresholds, whatever the box's; the shipped minute of CPU_WINDOW and QUEUE_LAG
# shortened to seconds: the verdicts are the same, the test does not wait minutes for them.
CPU_WINDOW_S, QUEUE_LAG_S = 3.0, 5.0
SEED_CPU = {"CPU_WARN": "70", "CPU_CRIT": "90", "CPU_WINDOW": f"{CPU_WINDOW_S:g}",
            "QUEUE_LAG": f"{QUEUE_LAG_S:g}"}
# A real CPU hog: a busy loop per core. Niced, so the stack under test still gets its turn;
# nice time is busy time to the kernel's counters and the load average all the same.
HOG = "import os\nos.nice(19)\nwhile True:\n    pass\n"


@pytest.fixture
def cpu_hog() -> Iterator[list[subprocess.Popen]]:
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(os.cpu_count() or 1)]
    yield hogs
    for hog in hogs:
        hog.kill()
    for hog in hogs:
        hog.wait(10)


def cpu_percent(output: str) -> float:
    """The `cpu` perfdata item of the plugin output."""
    item = next(p for p in parse(output)[2] if p.startswith("'cpu'="))
    return float(item.split("=")[1].split("%")[0])


def saturated_cli(env: dict[str, str], timeout: float, also=lambda _r: True
                  ) -> subprocess.CompletedProcess:
    """The CLI's answer once it reads the CPU at CPU_CRIT or more (and `also` holds)."""
    def saturated() -> subprocess.CompletedProcess | None:
        result = cli(env, "all")
        return result if cpu_percent(result.stdout) >= 90 and also(result) else None
    return wait_for(saturated, timeout, "the CLI to read the CPU saturated", interval=2.0)


def saturated_detailed(api: MonitoredApi, timeout: float, also=lambda _c: True
                       ) -> tuple[int, dict]:
    """/health/detailed once its cpu check reads CPU_CRIT or more (and `also` holds)."""
    def saturated() -> tuple[int, dict] | None:
        status, body = api.json("/health/detailed")
        cpu = body["checks"]["cpu"][0]
        return (status, body) if cpu["figures"]["percent"] >= 90 and also(cpu) else None
    return wait_for(saturated, timeout, "/health/detailed to read the CPU saturated",
                    interval=1.0)


def test_a_busy_cpu_alone_warns_but_never_fails_readiness_or_pages_critical(
        make_stack, cpu_hog):
    stack = make_stack(env={"WORKER_PROCESSES": "1", **SEED_CPU})
    with monitored(stack, **SEED_CPU) as api:
        # Old enough to judge a whole window of samples, not one.
        wait_for(lambda: api.json("/status")[1]["uptime_s"] >= CPU_WINDOW_S + 1, 30,
                 "a CPU window of api")
        detailed_status, detailed = saturated_detailed(api, 60)
    result = saturated_cli({**stack.env, **SEED_CPU}, 60)

    cpu = detailed["checks"]["cpu"][0]
    assert detailed_status == 200 and detailed["status"] == "warn", detailed
    assert cpu["status"] == "warn"
    assert cpu["output"].startswith("CPU saturated, but the queue keeps up: busy, not failing")
    assert cpu["figures"]["measured"] == "cpu_times"
    assert CPU_WINDOW_S <= cpu["figures"]["window_s"] < 2 * CPU_WINDOW_S  # CPU_WINDOW's span
    assert cpu["figures"]["queue_lagging"] is False
    state, _summary, _perf, problems = parse(result.stdout)
    assert (result.returncode, state) == (1, "WARNING"), result.stdout
    assert problems == [p for p in problems if p.startswith("WARNING ")]
    cpu_line = next(p for p in problems if p.startswith("WARNING cpu:"))
    assert cpu_line.startswith("WARNING cpu: CPU saturated, but the queue keeps up"), problems
    measured = re.search(r"busy over (\d+) s", cpu_line)  # the CLI measured CPU_WINDOW
    assert measured and CPU_WINDOW_S <= int(measured.group(1)) < 2 * CPU_WINDOW_S, cpu_line
    print(f"\nhog alone: /health/detailed {detailed_status} at {cpu['figures']['percent']}% "
          f"over {cpu['figures']['window_s']} s; CLI exit {result.returncode}: {problems}")


def test_a_saturated_cpu_with_a_lagging_queue_is_critical_and_says_add_workers_or_hosts(
        make_stack, cpu_hog):
    # No workers program: the queued jobs wait, and their wait grows by a second a second.
    stack = make_stack(env={"WORKER_PROCESSES": "1", **SEED_CPU}, workers=False)
    submitted_at = time.monotonic()
    for _ in range(3):
        submit(stack, PDF)
    env = {**stack.env, **SEED_CPU}
    result = saturated_cli(env, QUEUE_LAG_S + 60,
                           also=lambda r: "CRITICAL cpu:" in r.stdout)
    lagging_after = time.monotonic() - submitted_at
    with monitored(stack, **SEED_CPU) as api:
        detailed_status, detailed = saturated_detailed(
            api, 60, also=lambda cpu: cpu["status"] == "fail")

    cpu_line = next(p for p in parse(result.stdout)[3] if p.startswith("CRITICAL cpu:"))
    assert result.returncode == 2
    assert cpu_line.startswith(f"CRITICAL cpu: {SATURATED_AND_LAGGING} (")
    assert lagging_after >= QUEUE_LAG_S  # not before the queue had lagged QUEUE_LAG
    cpu = detailed["checks"]["cpu"][0]
    assert detailed_status == 503 and detailed["status"] == "fail"
    assert cpu["output"].startswith(f"{SATURATED_AND_LAGGING} (")
    assert cpu["figures"]["queue_lagging"] is True
    assert cpu["figures"]["oldest_waiting_age_s"] >= QUEUE_LAG_S
    print(f"\nhog + lagging queue: CLI critical {lagging_after:.0f} s after the submits: "
          f"{cpu_line}")
