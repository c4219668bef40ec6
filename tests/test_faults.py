"""Faults injected into a real running stack: crashes, deadlines, memory, outages, stops.

Every test starts its own stack (supervisord, redis-server, api, pool) with short
settings, breaks one thing for real (SIGKILL, a hung `pdftotext` first on PATH, a
stopped redis-server, a full tmpfs) and asserts on what the service did: job states,
results in Redis, log events, and processes that must be gone, checked by pid.
Measured figures are printed (run with -s to see them).
"""

from __future__ import annotations

import configparser
import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from daemon.config import Settings
from daemon.store import (
    DEAD_LETTERS,
    GROUP,
    RESTARTS,
    STREAM,
    breaker_key,
    consumer_name,
    heartbeat_key,
    history_key,
    payload_key,
)
from devtools.stack import wait_for
from tests.conftest import squash
from tests.fakes import (
    FOX,
    PDF,
    TXT,
    done_counts,
    events,
    gone,
    job,
    pool_children,
    program_state,
    request,
    submit,
    submit_many,
    summary_lines,
    wait_all,
    wait_final,
)

ROOT = Path(__file__).resolve().parents[1]


def spool_leftovers(stack) -> list[Path]:
    """Files under var/spool/slot-*/ (empty tmp folders are not leftovers)."""
    spool = stack.root / "var" / "spool"
    return [p for p in spool.glob("slot-*/**/*") if p.is_file()]


def pending(stack) -> int:
    with stack.redis() as r:
        return int(r.xpending(STREAM, GROUP)["pending"])


def history(stack, job_id: str) -> list[dict]:
    with stack.redis() as r:
        return [orjson.loads(x) for x in r.lrange(history_key(job_id), 0, -1)]


# --- 1. worker crash ----------------------------------------------------------------
def test_a_job_whose_child_is_killed_is_requeued_at_once_and_completed(make_stack, tools):
    tools.mode("pdftotext", "slow:2")
    stack = make_stack(env=tools.env(WORKER_PROCESSES=2, JOB_TIMEOUT=20))
    job_id = submit(stack, PDF)
    child = wait_for(tools.worker_of_running_tool, 10, "the job's tool to start")
    killed_at = time.time()
    child.kill()
    found = wait_final(stack, job_id, 20)
    finished_in = time.time() - killed_at

    assert found["state"] == "done" and squash(found["text"]) == FOX
    assert found["attempts"] == 2
    requeued = events(stack, "job.requeued", job_id=job_id)
    assert [e["reason"] for e in requeued] == ["killed"]
    exits = events(stack, "child.exited", child_pid=child.pid)
    assert exits and exits[0]["reason"] == "killed" and exits[0]["job_id"] == job_id
    # Handed back at once by the master, not after CLAIM_IDLE (JOB_TIMEOUT + 30 s).
    failed = [h for h in history(stack, job_id) if h["event"] == "failed"]
    requeue_delay = float(failed[0]["at"]) - killed_at
    assert requeue_delay < 1.5
    assert not events(stack, "job.reclaimed")
    assert child.pid not in [c.pid for c in pool_children(stack)]
    wait_for(lambda: len(pool_children(stack)) == 2, 10, "the slot to be refilled")
    assert len(summary_lines(stack, job_id)) == 1
    wait_for(lambda: not tools.running(), 5, "no fake tool left running")
    assert not spool_leftovers(stack)
    with stack.redis() as r:
        assert int(r.hget(RESTARTS, "killed")) == 1
    print(f"\nkill -> requeued in {requeue_delay:.2f} s, kill -> done in {finished_in:.2f} s "
          f"(tool sleeps 2 s), attempts={found['attempts']}")


def test_jobs_left_by_a_vanished_consumer_are_reclaimed_once_idle(make_stack):
    stack = make_stack(env={"WORKER_PROCESSES": "2", "JOB_TIMEOUT": "2", "CLAIM_IDLE": "3"},
                       workers=False)
    ids = submit_many(stack, TXT, 3)
    with stack.redis() as r:
        # A consumer of another host takes the jobs, then its host vanishes.
        taken = r.xreadgroup(GROUP, "gone-host-0", {STREAM: ">"}, count=10)
        assert len(taken[0][1]) == 3
    taken_at = time.time()
    stack.supervisorctl("start", "workers")
    found = wait_all(stack, ids, 30)
    recovered_in = time.time() - taken_at

    assert [f["state"] for f in found] == ["done"] * 3
    assert all(squash(f["text"]) == FOX for f in found)
    reclaimed = events(stack, "job.reclaimed")
    assert sorted(e["job_id"] for e in reclaimed) == sorted(ids)
    # Not before the idle bound: a slow live consumer must not lose its job.
    assert min(f["started_at"] for f in found) - taken_at >= 3.0
    assert pending(stack) == 0
    with stack.redis() as r:
        consumers = {c["name"].decode(): c["pending"]
                     for c in r.xinfo_consumers(STREAM, GROUP)}
    assert consumers["gone-host-0"] == 0
    print(f"\n3 abandoned jobs done {recovered_in:.2f} s after they were taken "
          f"(CLAIM_IDLE=3 s)")


@pytest.mark.parametrize("signal_name, reason", [("KILL", "killed"), ("SEGV", "crashed")])
def test_a_job_that_always_kills_its_child_is_dead_lettered_after_max_attempts(
        make_stack, tools, signal_name, reason):
    tools.mode("pdftotext", f"signal-parent:{signal_name}")
    stack = make_stack(env=tools.env(WORKER_PROCESSES=2, MAX_ATTEMPTS=2,
                                     CIRCUIT_BREAKER_FAILURE_THRESHOLD=10))
    started = time.time()
    job_id = submit(stack, PDF)
    found = wait_final(stack, job_id, 30)
    took = time.time() - started

    assert found["state"] == "failed"
    assert found["error"]["code"] == "too_many_attempts"
    assert found["attempts"] == 2
    assert len(events(stack, "child.exited", job_id=job_id, reason=reason)) == 2
    with stack.redis() as r:
        dead = r.xrange(DEAD_LETTERS)
    assert len(dead) == 1
    letter = {k.decode(): v for k, v in dead[0][1].items()}
    assert letter["job"].decode() == job_id
    record = orjson.loads(letter["record"])
    assert record["attempts"] == "2" and record["error_code"] == "too_many_attempts"
    steps = orjson.loads(letter["history"])
    assert [s["event"] for s in steps] == ["delivered", "failed", "delivered", "failed"]
    assert all(s["code"] == "too_many_attempts" for s in steps if s["event"] == "failed")
    # The payload stays for an operator's replay.
    with stack.redis() as r:
        assert r.exists(payload_key(job_id))
    wait_for(lambda: not tools.running(), 5, "no fake tool left running")
    with stack.redis() as r:
        assert int(r.hget(RESTARTS, reason)) == 2
    print(f"\npoison job ({reason}) dead-lettered after {found['attempts']} attempts "
          f"in {took:.2f} s")


def test_a_redelivered_job_whose_result_exists_is_only_acknowledged(make_stack):
    stack = make_stack(env={"WORKER_PROCESSES": "1"})
    job_id = submit(stack, TXT)
    first = wait_final(stack, job_id, 20)
    assert first["state"] == "done"
    with stack.redis() as r:
        # What a lost XACK (AOF everysec after a crash) looks like: the job comes again.
        entry = r.xadd(STREAM, {"job": job_id, "family": "python"}).decode()
    wait_for(lambda: events(stack, "job.duplicate", job_id=job_id), 10,
             "the redelivery to be recognised")
    wait_for(lambda: pending(stack) == 0, 5, "the redelivery to be acknowledged")

    again = job(stack, job_id)
    assert again["finished_at"] == first["finished_at"] and again["text"] == first["text"]
    assert again["attempts"] == 1
    assert done_counts(stack)[job_id] == 1
    assert events(stack, "job.duplicate", job_id=job_id)[0]["entry"] == entry


# --- 2. the pool master killed --------------------------------------------------------
def test_a_killed_pool_master_takes_its_children_and_tools_along_and_jobs_complete(
        make_stack, tools):
    tools.mode("pdftotext", "slow:3")
    stack = make_stack(env=tools.env(WORKER_PROCESSES=2, JOB_TIMEOUT=20))
    ids = submit_many(stack, PDF, 2)
    wait_for(lambda: len(tools.pids()) >= 4, 10, "both jobs' tools to start")  # sh + sleep
    master = stack.program_pid("workers")
    children = [c.pid for c in pool_children(stack)]
    tool_pids = tools.running()
    assert len(children) == 2 and len(tool_pids) >= 4

    killed_at = time.time()
    os.kill(master, signal.SIGKILL)
    wait_for(lambda: gone(children + tool_pids), 5, "children and tools to die with the master")
    orphans_gone_in = time.time() - killed_at
    tools.mode("pdftotext", "pass")
    wait_for(lambda: stack.program_pid("workers") not in (0, master), 15,
             "supervisord to restart the pool")
    found = wait_all(stack, ids, 30)
    recovered_in = time.time() - killed_at

    assert [f["state"] for f in found] == ["done", "done"]
    assert all(squash(f["text"]) == FOX for f in found)
    assert all(f["attempts"] == 2 for f in found)
    wait_for(lambda: program_state(stack, "workers") == "RUNNING", 10,
             "supervisord to see the new pool as RUNNING")
    # The restarted slots read their own pending entries first: no idle-timeout wait.
    assert not events(stack, "job.reclaimed")
    assert len(summary_lines(stack, ids)) == len(ids)  # one each
    print(f"\nmaster SIGKILL: children+tools gone in {orphans_gone_in:.2f} s, "
          f"both in-flight jobs done {recovered_in:.2f} s after the kill")


# --- 3. hard deadline ---------------------------------------------------------------
def test_a_hung_tool_is_killed_at_the_deadline_and_the_job_ends_extraction_timeout(
        make_stack, tools):
    tools.mode("pdftotext", "hang")
    stack = make_stack(env=tools.env(WORKER_PROCESSES=1, JOB_TIMEOUT=3, MAX_ATTEMPTS=2))
    started = time.time()
    job_id = submit(stack, PDF)
    found = wait_final(stack, job_id, 30)
    took = time.time() - started

    assert found["state"] == "failed"
    assert found["error"]["code"] == "extraction_timeout"
    assert found["attempts"] == 2
    deadlines = events(stack, "job.deadline", job_id=job_id)
    assert len(deadlines) == 2, [(e["timestamp"], e["event"], e["child_pid"]) for e in
                                 events(stack) if "child_pid" in e]
    assert len(events(stack, "child.exited", reason="deadline", job_id=job_id)) == 2
    assert len(tools.pids()) == 2
    wait_for(lambda: gone(tools.pids()), 5, "the hung tools to be gone")
    assert 6.0 <= took < 15.0
    with stack.redis() as r:
        assert int(r.hget(RESTARTS, "deadline")) == 2
    print(f"\nhung tool: failed extraction_timeout after 2 x JOB_TIMEOUT=3 s in {took:.2f} s; "
          f"{len(tools.pids())} tool pids, none left")


# --- 4. memory ----------------------------------------------------------------------
def test_a_child_over_the_soft_memory_limit_is_replaced_after_each_job(make_stack):
    stack = make_stack(env={"WORKER_PROCESSES": "1", "WORKER_MAX_MEMORY_MB": "1"})
    ids = submit_many(stack, TXT, 3)
    found = wait_all(stack, ids, 30)

    assert [f["state"] for f in found] == ["done"] * 3
    wait_for(lambda: len(events(stack, "child.exited", reason="recycle-memory")) >= 3, 10,
             "three recycle-memory exits")
    # One job per child: every job.done comes from a different pid.
    assert len({e["pid"] for e in events(stack, "job.done")}) == 3
    assert len(events(stack, "child.recycle", reason="memory")) >= 3
    with stack.redis() as r:
        assert int(r.hget(RESTARTS, "recycle-memory")) >= 3


def test_a_child_over_the_hard_memory_limit_is_killed_and_the_job_ends_memory_limit(
        make_stack, tools):
    tools.mode("pdftotext", "memory:300")
    stack = make_stack(env=tools.env(WORKER_PROCESSES=1, WORKER_HARD_MEMORY_MB=200,
                                     MAX_ATTEMPTS=2, JOB_TIMEOUT=20))
    started = time.time()
    job_id = submit(stack, PDF)
    found = wait_final(stack, job_id, 30)
    took = time.time() - started

    assert found["state"] == "failed" and found["error"]["code"] == "memory_limit"
    assert found["attempts"] == 2
    limits = events(stack, "child.memory_limit", job_id=job_id)
    assert len(limits) == 2 and all(e["rss_mb"] > 200 for e in limits)
    assert len(events(stack, "child.exited", reason="memory", job_id=job_id)) == 2
    wait_for(lambda: gone(tools.pids()), 5, "the memory hog to be gone")
    print(f"\nmemory hog: killed at {[e['rss_mb'] for e in limits]} MB (hard limit 200), "
          f"failed memory_limit in {took:.2f} s")


def test_children_are_recycled_after_max_jobs_with_jitter(make_stack):
    stack = make_stack(env={"WORKER_PROCESSES": "1", "WORKER_MAX_JOBS": "3"})
    ids = submit_many(stack, TXT, 10)
    found = wait_all(stack, ids, 30)

    assert [f["state"] for f in found] == ["done"] * 10
    started = events(stack, "child.started")
    assert {e["max_jobs"] for e in started} <= {3, 4}
    per_child = {}
    for e in summary_lines(stack, ids):
        per_child[e["pid"]] = per_child.get(e["pid"], 0) + 1
    recycled = events(stack, "child.exited", reason="recycle-jobs")
    assert len(recycled) >= 2
    assert all(per_child[e["child_pid"]] in (3, 4) for e in recycled)
    print(f"\njobs per child: {sorted(per_child.values())}, recycle-jobs exits: {len(recycled)}")


# --- 6. Redis outage ------------------------------------------------------------------
def test_a_redis_outage_is_answered_with_503_and_jobs_complete_when_it_returns(
        make_stack, tools):
    tools.mode("pdftotext", "slow:1")
    stack = make_stack(env=tools.env(WORKER_PROCESSES=1, JOB_TIMEOUT=10))
    ids = submit_many(stack, PDF, 3)
    master = stack.program_pid("workers")
    stack.supervisorctl("stop", "redis")
    down_at = time.time()

    for method, path, body in (("POST", "/v1/jobs?filename=a.txt", TXT.read_bytes()),
                               ("GET", f"/v1/jobs/{ids[0]}", None)):
        asked = time.monotonic()
        status, answer, headers = request(stack, method, path, body)
        answered_in = time.monotonic() - asked
        assert status == 503, (method, status, answer)
        assert answer["error"]["code"] == "redis_unavailable"
        assert int(headers["Retry-After"]) >= 1
        assert answered_in < 1.5, (method, answered_in)
        print(f"\n{method} during the outage: 503 in {answered_in:.2f} s")
    assert request(stack, "GET", "/health")[0] == 200
    # The pool waits it out: no FATAL, no restart by supervisord, still the same master.
    wait_for(lambda: events(stack, "redis.unavailable", process="worker"), 20,
             "a child to notice the outage")
    wait_for(lambda: time.time() - down_at > 4, 5, "the outage to last a few seconds")
    assert program_state(stack, "workers") == "RUNNING"
    assert stack.program_pid("workers") == master

    stack.supervisorctl("start", "redis")
    back_at = time.time()
    found = wait_all(stack, ids, 30)
    recovered_in = time.time() - back_at

    assert [f["state"] for f in found] == ["done"] * 3
    assert all(squash(f["text"]) == FOX for f in found)
    assert stack.program_pid("workers") == master
    assert len(summary_lines(stack, ids)) == len(ids)  # one each
    print(f"outage of {back_at - down_at:.1f} s; the 3 jobs accepted before it done "
          f"{recovered_in:.2f} s after redis returned")


# --- 7. graceful stop -----------------------------------------------------------------
def test_a_stopping_pool_finishes_the_running_job_then_exits(make_stack, tools):
    tools.mode("pdftotext", "slow:3")
    stack = make_stack(env=tools.env(WORKER_PROCESSES=1, SHUTDOWN_TIMEOUT=10))
    job_id = submit(stack, PDF)
    wait_for(tools.worker_of_running_tool, 10, "the job's tool to start")
    asked = time.monotonic()
    stack.supervisorctl("stop", "workers")
    stopped_in = time.monotonic() - asked

    assert program_state(stack, "workers") == "STOPPED"
    found = job(stack, job_id)
    assert found["state"] == "done" and squash(found["text"]) == FOX
    assert pending(stack) == 0
    tally = events(stack, "pool.stopped")
    assert len(tally) == 1 and tally[0]["done"] == 1 and tally[0]["requeued"] == 0
    assert stopped_in < 10
    print(f"\nstop during a 3 s job: job done and acked, pool stopped in {stopped_in:.2f} s")


def test_a_job_longer_than_the_shutdown_timeout_stays_pending_and_completes_after_restart(
        make_stack, tools):
    tools.mode("pdftotext", "slow:30")
    stack = make_stack(env=tools.env(WORKER_PROCESSES=1, SHUTDOWN_TIMEOUT=2, JOB_TIMEOUT=60))
    job_id = submit(stack, PDF)
    wait_for(tools.worker_of_running_tool, 10, "the job's tool to start")
    asked = time.monotonic()
    stack.supervisorctl("stop", "workers")
    stopped_in = time.monotonic() - asked

    assert 2.0 <= stopped_in < 6.0
    assert job(stack, job_id)["state"] == "processing"
    assert pending(stack) == 1  # never acknowledged unfinished
    tally = events(stack, "pool.stopped")
    assert tally[0]["requeued"] == 1 and tally[0]["done"] == 0
    wait_for(lambda: gone(tools.pids()), 5, "the tool to be stopped with its child")

    tools.mode("pdftotext", "pass")
    stack.supervisorctl("start", "workers")
    found = wait_final(stack, job_id, 20)
    assert found["state"] == "done" and squash(found["text"]) == FOX
    assert found["attempts"] == 2
    assert pending(stack) == 0
    print(f"\nstop with a 30 s job and SHUTDOWN_TIMEOUT=2: stopped in {stopped_in:.2f} s, "
          f"job left pending, done after restart (attempts={found['attempts']})")


def test_a_second_term_stops_the_pool_at_once(make_stack, tools):
    tools.mode("pdftotext", "slow:30")
    stack = make_stack(env=tools.env(WORKER_PROCESSES=1, SHUTDOWN_TIMEOUT=30, JOB_TIMEOUT=60))
    job_id = submit(stack, PDF)
    wait_for(tools.worker_of_running_tool, 10, "the job's tool to start")
    master = stack.program_pid("workers")
    os.kill(master, signal.SIGTERM)
    wait_for(lambda: events(stack, "pool.stopping"), 5, "the first TERM to be seen")
    asked = time.monotonic()
    os.kill(master, signal.SIGTERM)
    wait_for(lambda: gone([master]), 5, "the master to exit")
    stopped_in = time.monotonic() - asked

    assert stopped_in < 2.0
    wait_for(lambda: gone(tools.pids()), 5, "the tool to be stopped")
    assert events(stack, "pool.stop_now")
    assert events(stack, "pool.stopped")[0]["requeued"] == 1
    # supervisord starts the pool again; the job left pending is taken up.
    tools.mode("pdftotext", "pass")
    found = wait_final(stack, job_id, 30)
    assert found["state"] == "done" and found["attempts"] == 2
    print(f"\nsecond TERM: pool gone {stopped_in:.2f} s later (the job had ~30 s to go)")


def test_supervisord_stop_settings_fit_the_shutdown_timeout():
    conf = configparser.ConfigParser(interpolation=None, strict=False)
    conf.read(ROOT / "supervisord.conf")
    workers = conf["program:workers"]
    default = Settings()
    # supervisord's KILL must come after the master's own drain deadline and its tally.
    assert int(workers["stopwaitsecs"]) >= default.shutdown_timeout + 10
    assert workers["stopsignal"] == "TERM"
    # TERM goes to the master alone (it forwards it and knows the deadline); KILL goes to
    # the group so nothing survives supervisord giving up.
    assert workers.get("stopasgroup", "false") == "false"
    assert workers["killasgroup"] == "true"
    assert workers["autorestart"] == "true"
    assert int(workers["startsecs"]) >= 1 and int(workers["startretries"]) >= 3


# --- 8. disk ------------------------------------------------------------------------
def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                             str(path)], capture_output=True)
    return result.returncode == 0


def _fill(path: Path) -> Path:
    filler = path / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_spool_retries_jobs_which_complete_when_space_returns(make_stack, tmp_path):
    root = tmp_path / "stack"
    spool = root / "var" / "spool"
    if not _mount_tmpfs(spool, "1M"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        stack = make_stack(root=root, env={"WORKER_PROCESSES": "2", "MAX_ATTEMPTS": "5",
                                           "CIRCUIT_BREAKER_FAILURE_THRESHOLD": "2"})
        filler = _fill(spool)
        ids = submit_many(stack, PDF, 3)
        wait_for(lambda: len(events(stack, "job.retry", error_code="disk_full")) >= 3, 15,
                 "the jobs to be retried for the full disk")
        assert all(job(stack, job_id)["state"] in ("queued", "processing") for job_id in ids)
        assert not spool_leftovers(stack)  # no half-written payload
        with stack.redis() as r:
            # The disk is not the extractor's fault: the pdf breaker stays closed.
            assert (r.hget(breaker_key("pdf"), "state") or b"closed") == b"closed"
        filler.unlink()
        freed_at = time.time()
        found = wait_all(stack, ids, 20)
        recovered_in = time.time() - freed_at
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)

    assert [f["state"] for f in found] == ["done"] * 3
    assert all(squash(f["text"]) == FOX for f in found)
    retries = len(events(stack, "job.retry", error_code="disk_full"))
    print(f"\nfull spool: {retries} disk_full retries, all 3 jobs done {recovered_in:.2f} s "
          f"after space returned")


def test_files_left_by_killed_children_are_swept(make_stack):
    stack = make_stack(env={"WORKER_PROCESSES": "2", "CHORE_INTERVAL": "0.5",
                            "JOB_TIMEOUT": "5"})
    spool = stack.root / "var" / "spool"
    with stack.redis() as r:
        beat = orjson.loads(r.get(heartbeat_key(consumer_name(Settings(), 0))))
    left = spool / "slot-0" / "0123.pdf"  # what a child killed mid-job leaves behind
    left.write_bytes(b"%PDF-1.4 half")
    old = spool / "slot-1" / "tmp" / "soffice-profile" / "old.bin"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x" * 1000)
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    fresh = spool / "slot-1" / "live.pdf"  # may be a live job's: kept
    fresh.write_bytes(b"%PDF-1.4 live")
    stale = spool / "slot-7" / "x.pdf"  # a slot this pool no longer has
    stale.parent.mkdir()
    stale.write_bytes(b"x")

    os.kill(beat["pid"], signal.SIGKILL)
    # The slot's next child cleans its own folder at start ...
    wait_for(lambda: not left.exists(), 10, "the new child to clean its slot")
    # ... and the master's sweep removes old files and unknown slots.
    wait_for(lambda: not old.exists() and not stale.parent.exists(), 10, "the sweep")
    assert fresh.exists()
    assert (spool / "slot-0" / "tmp").is_dir() and (spool / "slot-1" / "tmp").is_dir()
    swept = events(stack, "chores.swept")
    assert sum(e["files"] for e in swept) == 2


def test_a_consumer_group_lost_under_a_running_pool_is_recreated(make_stack) -> None:
    # As after a failover to a replica that never received the group.
    stack = make_stack(env={"WORKER_PROCESSES": "1"})
    first = wait_final(stack, submit(stack, TXT), 30)
    with stack.redis() as r:
        r.xgroup_destroy(STREAM, GROUP)
    second = wait_final(stack, submit(stack, TXT), 30)
    assert first["state"] == second["state"] == "done"
    assert program_state(stack, "workers") == "RUNNING"
    # The new group starts from 0, so the first job is delivered again: it must only be
    # acknowledged, its one result untouched.
    wait_for(lambda: pending(stack) == 0, 10, "the redelivered entry to be acknowledged")
    assert job(stack, first["id"])["finished_at"] == first["finished_at"]
    with stack.redis() as r:
        assert [g["name"] for g in r.xinfo_groups(STREAM)] == [GROUP.encode()]
