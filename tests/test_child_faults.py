"""A pool child stuck or killed where no signal from outside can aim: real stacks, with
the fault injected through TEXTRACTD_TEST_FAULT (daemon/pool/faults.py).

- wedged: the child's main loop blocks between jobs while its watch thread runs on.
  SIGSTOP cannot show this (it stops the watch thread too).
- killed between storing a result and logging it: the job has its result, and only the
  master, which reaps the child, can still write its summary line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psutil

from daemon.config import Settings
from daemon.pool.faults import ENV
from daemon.pool.watchdog import loop_quiet_max, loop_stall_limit
from daemon.store import heartbeat_key
from devtools.stack import wait_for
from tests.fakes import TXT, events, pool_children, submit, summary_lines, wait_final

# Short bounds: the heartbeat stops after QUIET s of an idle loop not turning, the
# master kills the child after STALL s.
WEDGE_ENV = {"WORKER_PROCESSES": "1", "JOB_TIMEOUT": "4", "REDIS_SOCKET_TIMEOUT": "1",
             "REDIS_MAX_RETRIES": "2"}
_wedge_settings = dataclasses.replace(Settings(), job_timeout=4.0, redis_socket_timeout=1.0,
                                      redis_max_retries=2)
QUIET, STALL = loop_quiet_max(_wedge_settings), loop_stall_limit(_wedge_settings)


def heartbeats(stack) -> list[bytes]:
    with stack.redis() as r:
        return list(r.scan_iter(heartbeat_key("*")))


def test_a_child_whose_loop_is_wedged_between_jobs_stops_heartbeating_and_is_replaced(
        make_stack, tmp_path: Path) -> None:
    wedge = tmp_path / "wedge"
    stack = make_stack(env={**WEDGE_ENV, ENV: f"wedge-idle:{wedge}"})
    [child] = pool_children(stack)
    wedge.touch()  # the loop blocks at its next turn; the watch thread runs on
    wait_for(lambda: events(stack, "fault.wedge", pid=child.pid), 5, "the loop to wedge")
    assert child.is_running()

    # The heartbeat goes while the process still lives: health counts no live worker.
    wait_for(lambda: not heartbeats(stack), QUIET + 2, "the wedged child's heartbeat to go")
    assert child.status() != psutil.STATUS_ZOMBIE
    assert events(stack, "child.loop_stalled", pid=child.pid)

    # The master kills it and a new child takes the slot.
    wait_for(lambda: events(stack, "child.exited", child_pid=child.pid), STALL + 2,
             "the master to kill the wedged child")
    [exited] = events(stack, "child.exited", child_pid=child.pid)
    assert exited["reason"] == "wedged" and exited["job_id"] is None
    [wedged] = events(stack, "child.wedged", child_pid=child.pid)
    assert wedged["stalled_s"] > STALL
    wedge.unlink()
    found = wait_final(stack, submit(stack, TXT), 20)
    assert found["state"] == "done"
    assert [c.pid for c in pool_children(stack)] != [child.pid]
    wait_for(lambda: heartbeats(stack), 5, "the new child's heartbeat")


def test_a_child_killed_after_storing_a_result_has_its_summary_logged_by_the_master(
        make_stack) -> None:
    stack = make_stack(env={"WORKER_PROCESSES": "1", ENV: "kill-after-store"})
    job_id = submit(stack, TXT)
    found = wait_final(stack, job_id, 20)
    assert found["state"] == "done"

    wait_for(lambda: events(stack, "child.exited", job_id=job_id), 10,
             "the master to reap the child")
    [exited] = events(stack, "child.exited", job_id=job_id)
    assert exited["reason"] == "killed"
    summaries = summary_lines(stack, job_id)
    assert len(summaries) == 1, summaries
    [summary] = summaries
    assert summary["logged_by"] == "master" and summary["process"] == "pool"
    assert summary["state"] == "done" and summary["format"] == "txt"
    assert summary["bytes"] == TXT.stat().st_size and summary["attempt"] == 1
    assert summary["chars"] == found["chars"] and summary["duration_ms"] > 0
    assert summary["error_code"] is None
    # The job is finished: nothing to hand back to the queue.
    assert not events(stack, "job.requeued", job_id=job_id)


def test_a_child_killed_right_after_logging_a_summary_leaves_that_one_line(make_stack) -> None:
    # The kill lands after the line went out and before the slot says so: the master,
    # reaping, must see that the line is out and not write a second one.
    stack = make_stack(env={"WORKER_PROCESSES": "1", ENV: "kill-after-log"})
    job_id = submit(stack, TXT)
    found = wait_final(stack, job_id, 20)
    assert found["state"] == "done"

    wait_for(lambda: events(stack, "child.exited", job_id=job_id, reason="killed"), 10,
             "the master to reap the child")
    summaries = events(stack, "job.done", job_id=job_id)
    assert len(summaries) == 1, summaries
    [summary] = summaries
    assert summary["process"] == "worker" and "logged_by" not in summary
    assert summary["chars"] == found["chars"]


def _all_json(stack) -> list[str]:
    """The workers' log lines that are not JSON objects (a raw traceback would be); a
    last line still being written is not judged."""
    data = (stack.root / "logs" / "workers.log").read_text()
    lines = data.split("\n")[:-1]  # what follows the last newline is not a whole line
    return [line for line in lines if not (line.startswith("{") and line.endswith("}"))]


def test_a_child_that_raises_logs_child_crashed_as_json_and_its_slot_goes_on(
        make_stack, tmp_path: Path) -> None:
    crash = tmp_path / "crash"
    stack = make_stack(env={"WORKER_PROCESSES": "1", ENV: f"crash:{crash}"})
    [child] = pool_children(stack)
    crash.touch()  # the loop's next turn raises

    wait_for(lambda: events(stack, "child.exited", child_pid=child.pid), 10,
             "the master to reap the crashed child")
    [crashed] = events(stack, "child.crashed", pid=child.pid)
    assert crashed["level"] == "error" and "RuntimeError" in crashed["exception"]
    [exited] = events(stack, "child.exited", child_pid=child.pid)
    assert exited["reason"] == "crashed" and exited["exitcode"] == 1
    assert wait_final(stack, submit(stack, TXT), 20)["state"] == "done"
    assert not _all_json(stack)


def test_a_master_that_raises_logs_pool_crashed_as_json_and_supervisord_restarts_it(
        make_stack, tmp_path: Path) -> None:
    crash = tmp_path / "crash"
    stack = make_stack(env={"WORKER_PROCESSES": "1", ENV: f"crash-master:{crash}"})
    master = stack.program_pid("workers")
    crash.touch()  # the master's next tick raises

    wait_for(lambda: events(stack, "pool.crashed", pid=master), 10, "the master's crash")
    [crashed] = events(stack, "pool.crashed", pid=master)
    assert crashed["level"] == "error" and "RuntimeError" in crashed["exception"]
    wait_for(lambda: stack.program_pid("workers") not in (None, master), 20,
             "supervisord to start the pool again")
    assert wait_final(stack, submit(stack, TXT), 30)["state"] == "done"
    assert not _all_json(stack)
