"""supervisord runs the three programs; operators restart them with supervisorctl."""

from __future__ import annotations

import os
import stat
import subprocess

import psutil

from daemon.store import job_key
from devtools.stack import BIN, wait_for
from tests.client import Client
from tests.conftest import CORPUS

DOCX = CORPUS / "textract-tests/docx/standardized_text.docx"


def statuses(stack) -> dict[str, str]:
    lines = stack.supervisorctl("status").splitlines()
    return {line.split()[0]: line.split()[1] for line in lines if line.strip()}


def test_status_shows_redis_api_and_workers_running(shared_stack) -> None:
    assert statuses(shared_stack) == {"redis": "RUNNING", "api": "RUNNING",
                                      "workers": "RUNNING"}


def test_the_embedded_redis_has_no_tcp_port_and_keeps_jobs_safe(shared_stack) -> None:
    with shared_stack.redis() as r:
        config = {**r.config_get("port"), **r.config_get("appendonly"),
                  **r.config_get("maxmemory-policy")}
    assert config == {"port": "0", "appendonly": "yes", "maxmemory-policy": "noeviction"}
    sock = shared_stack.root / "var" / "redis.sock"
    assert stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0
    supervisor_sock = shared_stack.root / "var" / "supervisor.sock"
    assert stat.S_IMODE(supervisor_sock.stat().st_mode) & 0o002 == 0


def test_restarting_workers_and_api_gives_new_processes_that_still_serve(make_stack) -> None:
    stack = make_stack(env={"WORKER_PROCESSES": "1"})
    before = {p: stack.program_pid(p) for p in ("api", "workers")}
    assert "workers: started" in stack.supervisorctl("restart", "workers")
    assert "api: started" in stack.supervisorctl("restart", "api")
    after = {p: stack.program_pid(p) for p in ("api", "workers")}
    assert all(after[p] != before[p] and after[p] > 0 for p in after)
    assert not any(psutil.pid_exists(pid) for pid in before.values())
    wait_for(stack.healthy, 30, "the restarted api")
    reply = Client(stack).upload("fox.docx", DOCX.read_bytes(), wait=60)
    assert reply.status == 200 and reply.json()["state"] == "done"


def test_tail_shows_the_api_log_as_json_lines(shared_stack) -> None:
    Client(shared_stack).request("GET", "/v1/formats")
    tail = shared_stack.supervisorctl("tail", "api")
    assert '"event":"http.request"' in tail


def test_shutdown_leaves_no_process_behind(make_stack) -> None:
    stack = make_stack(env={"WORKER_PROCESSES": "2"})
    supervisord = psutil.Process(stack.process.pid)
    tree = [supervisord, *supervisord.children(recursive=True)]
    assert len(tree) >= 1 + 3 + 2  # supervisord, redis, api, pool master, two children
    stack.supervisorctl("shutdown")
    _gone, alive = psutil.wait_procs(tree, timeout=60)
    assert not alive, [p.pid for p in alive]


def test_with_redis_url_the_embedded_redis_is_not_started(make_stack, redis_server) -> None:
    stack = make_stack(embedded_redis=False,
                       env={"REDIS_URL": redis_server.url, "WORKER_PROCESSES": "1"})
    assert statuses(stack)["redis"] == "STOPPED"
    assert not (stack.root / "var" / "redis.sock").exists()
    job = Client(stack).upload("fox.docx", DOCX.read_bytes(), wait=60).json()
    assert job["state"] == "done"
    assert redis_server.client().hget(job_key(job["id"]), "state") == b"done"


def test_supervisorctl_works_from_the_stack_folder_without_arguments(shared_stack) -> None:
    # As operators use it: cwd is the folder holding supervisord.conf, no -c.
    shared_stack.wait_running()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(["supervisorctl", "status"], cwd=shared_stack.root, env=env,
                         capture_output=True, text=True, timeout=30).stdout
    assert out.count("RUNNING") == 3


def test_stopping_the_api_answers_its_in_flight_requests_first(make_stack) -> None:
    import threading
    import time

    stack = make_stack(workers=False, env={"SHUTDOWN_TIMEOUT": "10"})
    client = Client(stack)
    job_id = client.upload("fox.docx", DOCX.read_bytes()).json()["id"]
    replies = []
    with stack.redis() as r:
        r.config_resetstat()
        poll = threading.Thread(target=lambda: replies.append(client.job(job_id, wait=60)))
        poll.start()
        # The long poll's handler has read the job (HGETALL) and now waits: in flight.
        wait_for(lambda: "cmdstat_hgetall" in r.info("commandstats"), 10,
                 "the long poll to be in its handler")
    started = time.monotonic()
    assert "api: stopped" in stack.supervisorctl("stop", "api")
    stopped_in = time.monotonic() - started
    poll.join(10)
    # The long poll was answered (the job as it is), not cut off, and quickly.
    assert replies and replies[0].status == 200 and replies[0].json()["state"] == "queued"
    assert stopped_in < 5
    assert not stack.healthy()  # and nothing new is accepted


def test_a_discarded_stack_leaves_no_process_behind_its_pool_children_included(
        make_stack) -> None:
    stack = make_stack(env={"WORKER_PROCESSES": "2"})
    Client(stack).upload("warm.txt", b"warm words")  # the children are up and working
    top = psutil.Process(stack.process.pid)
    tree = wait_for(lambda: (t := top.children(recursive=True)) and len(t) >= 5 and t, 20,
                    "redis, the api, the pool master and its two children")

    stack.discard()

    def gone(process: psutil.Process) -> bool:
        try:
            return process.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(lambda: all(gone(p) for p in [top, *tree]), 10, "every process of the stack")
