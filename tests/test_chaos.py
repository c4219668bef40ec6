"""Chaos: hundreds of corpus jobs while children are SIGKILLed at random, redis-server is
restarted once and the pool is restarted once. Every 202 must end `done` with the text
textract itself gives for that document, each job must have exactly one result and one
summary line, and no temp file or tool process may be left behind. The counts are
printed (run with -s).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psutil
import textract

from daemon.store import GROUP, JOB_COUNTERS, STREAM
from devtools.stack import Stack, wait_for
from tests.conftest import corpus_documents
from tests.fakes import done_counts, events, pool_children, request, wait_final

JOBS = 300
# Formats textract handles in milliseconds, in Python or through a quick external tool
# (pdftotext, unrtf, ghostscript): the chaos is the subject here, not soffice or OCR.
CHEAP = {"csv", "tsv", "psv", "txt", "json", "odt", "ods", "docx", "eml", "html", "xls",
         "xlsx", "rtf", "msg", "epub", "pptx", "pdf", "ps"}
MAX_BYTES = 400_000
SUBMIT_SECONDS = 10.0
REDIS_RESTART_AT = 3.0
WORKERS_RESTART_AT = 7.0


def cheap_documents() -> list:
    docs = [d for d in corpus_documents()
            if d.format in CHEAP and not d.kwargs and d.path.stat().st_size <= MAX_BYTES]
    assert len(docs) >= 20, "the corpus is missing (see tests/conftest.py)"
    return docs


def expected_texts(docs: list) -> dict:
    """What textract itself returns for each distinct document, computed once here."""
    return {d.path: textract.process(str(d.path)).decode("utf-8", "replace") for d in docs}


class Chaos(threading.Thread):
    """SIGKILLs a random pool child every few hundred ms; restarts redis and the pool once."""

    def __init__(self, stack: Stack, started: float) -> None:
        super().__init__(name="chaos", daemon=True)
        self.stack = stack
        self.started = started
        self.stop = threading.Event()
        self.kills = 0
        self.redis_restarted = self.workers_restarted = False
        self.rng = random.Random(3)

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(0.1, 0.4)):
            elapsed = time.monotonic() - self.started
            if not self.redis_restarted and elapsed > REDIS_RESTART_AT:
                self.stack.supervisorctl("restart", "redis")
                self.redis_restarted = True
            elif not self.workers_restarted and elapsed > WORKERS_RESTART_AT:
                self.stack.supervisorctl("restart", "workers")
                self.workers_restarted = True
            children = pool_children(self.stack)
            if children:
                with contextlib.suppress(psutil.Error):
                    self.rng.choice(children).kill()
                    self.kills += 1


def stray_processes(stack: Stack) -> list[str]:
    """Processes of this stack that are neither supervised programs nor pool children."""
    expected = {stack.process.pid}
    expected |= {stack.program_pid(p) for p in ("redis", "api", "workers")}
    expected |= {c.pid for c in pool_children(stack)}
    stray = []
    for proc in psutil.process_iter(["pid", "name", "status"]):
        with contextlib.suppress(psutil.Error):
            if (proc.info["pid"] not in expected
                    and proc.info["status"] != psutil.STATUS_ZOMBIE
                    and proc.environ().get("TEXTRACTD_HOME") == str(stack.root)):
                stray.append(f"{proc.info['pid']} {' '.join(proc.cmdline())[:80]}")
    return stray


def test_jobs_survive_killed_children_and_restarts_of_redis_and_the_pool(make_stack):
    docs = cheap_documents()
    expected = expected_texts(docs)
    stack = make_stack(env={
        "WORKER_PROCESSES": "2", "JOB_TIMEOUT": "10", "MAX_ATTEMPTS": "6",
        "SHUTDOWN_TIMEOUT": "3", "CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "1", "RESULT_TTL": "900",
    })
    plan = [docs[i % len(docs)] for i in range(JOBS)]
    accepted: dict[str, object] = {}
    refused = Counter()
    server_errors: list[str] = []

    def submit(doc) -> None:
        data = doc.path.read_bytes()
        for _ in range(200):
            status, body, _ = request(stack, "POST", f"/v1/jobs?filename={doc.path.name}", data)
            if status == 202:
                accepted[body["id"]] = doc
                return
            # 503 while redis restarts: come back, as the Retry-After asks. Anything else
            # is kept with the api's own log of it, and fails the test at the end.
            refused[f"{status} {body['error']['code']}"] += 1
            if status != 503:
                server_errors.append(body["error"]["request_id"])
                return
            time.sleep(0.1)
        raise AssertionError(f"{doc.id} never accepted")

    started = time.monotonic()
    chaos = Chaos(stack, started)
    chaos.start()
    with ThreadPoolExecutor(4) as pool:
        futures = []
        for i, doc in enumerate(plan):
            # Spread the uploads over SUBMIT_SECONDS so the faults land among them.
            delay = started + i * SUBMIT_SECONDS / JOBS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(submit, doc))
        for f in futures:
            f.result()
    wait_for(lambda: chaos.redis_restarted and chaos.workers_restarted
             and time.monotonic() - started > SUBMIT_SECONDS + 2, 30,
             "both restarts to have happened")
    chaos.stop.set()
    chaos.join(30)
    final = {job_id: wait_final(stack, job_id, 120) for job_id in accepted}
    took = time.monotonic() - started

    states = Counter(j["state"] for j in final.values())
    wrong = [job_id for job_id, j in final.items()
             if j["state"] != "done" or j["text"] != expected[accepted[job_id].path]]
    per_job = wait_for(lambda: c if len(c := done_counts(stack)) >= JOBS else None, 10,
                       "a job.done line for every job")
    with stack.redis() as r:
        counters = {k.decode(): int(v) for k, v in r.hgetall(JOB_COUNTERS).items()}
        left_pending = r.xpending(STREAM, GROUP)["pending"]
    attempts = Counter(j["attempts"] for j in final.values())
    spool = stack.root / "var" / "spool"
    leftovers = [str(p) for p in spool.glob("*/**/*") if p.is_file()]
    stray = stray_processes(stack)

    print(f"\nchaos: {len(accepted)} jobs accepted ({sum(refused.values())} uploads refused "
          f"with 503 first: {dict(refused)}), {chaos.kills} children SIGKILLed, redis and "
          f"the pool restarted once each, all final {took:.1f} s after the first upload")
    print(f"states {dict(states)}; attempts {dict(sorted(attempts.items()))}; job.done per "
          f"job {dict(Counter(per_job.values()))}; results written {counters.get('done')}; "
          f"requeued {len(events(stack, 'job.requeued'))}, duplicates acknowledged "
          f"{len(events(stack, 'job.duplicate'))}, breaker openings "
          f"{len(events(stack, 'breaker.open'))}, reclaimed "
          f"{len(events(stack, 'job.reclaimed'))}")

    assert not server_errors, [e for e in events(stack, program="api")
                               if e.get("request_id") in server_errors[:3]]
    assert len(accepted) == JOBS
    assert states == {"done": JOBS}, states
    assert not wrong, wrong[:5]
    # One result per job: the atomic FINISH counted each job once, and each job has one
    # summary line, whichever instant its child was killed at.
    assert counters.get("done") == JOBS and counters.get("finished") == JOBS
    assert set(per_job) == set(accepted) and set(per_job.values()) == {1}
    assert left_pending == 0
    assert chaos.kills >= 10
    assert events(stack, "child.exited", reason="killed")
    assert not leftovers, leftovers[:5]
    assert not stray, stray
    assert took < 150
