"""The Celery arm: a peer of the service measured in the same run (issue 18 item 4).

Celery 5 with one Redis as broker and result backend (a throwaway redis-server of its
own, configured as the stack's), one `celery worker` with the prefork pool and as many
children as the service has workers, and a client that keeps the same number of tasks
in flight as the HTTP client keeps uploads, each waiting for its result. The task is
bench/celery_tasks.py. Celery is only installed with the bench extra
(`pip install -e .[bench]`); without it `available()` says how to get it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from bench.arms import Reply, Slice, cpu_seconds
from bench.workload import digest
from daemon.config import ROOT
from devtools.redis_server import RedisServer

INSTALL = ("celery phase skipped: Celery is not installed here; "
           "`pip install -e '.[bench]'` adds it (Celery 5 on Redis, for the benchmark only)")
# A task: the document's bytes, its file name (textract goes by the suffix), textract's
# keyword arguments (extension, method).
Task = tuple[bytes, str, dict]
EXTRACT = "bench.extract"  # bench/celery_tasks.py's task


def available() -> bool:
    try:
        import bench.celery_tasks  # noqa: F401 - celery and its redis transport import
    except ImportError:
        return False
    return True


class CeleryArm:
    """redis-server + `celery worker` (prefork, `workers` children), started and stopped
    by pid, and the client that measures them; CPU counted over all of them."""

    def __init__(self, workers: int) -> None:
        from bench.celery_tasks import REDIS_ENV, client_app

        self.workers = workers
        self.root = Path(tempfile.mkdtemp(prefix="txd-celery-"))
        self.redis = RedisServer(self.root / "redis").start()
        url = f"redis+socket://{self.redis.socket}"
        env = {**os.environ, REDIS_ENV: url, "OMP_THREAD_LIMIT": "1",
               # Celery will not take pickled tasks as root (a broker anyone can write to
               # would run code); this broker is a socket only its owner can open (0700).
               "C_FORCE_ROOT": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        self.log = self.root / "worker.log"
        self.process: subprocess.Popen | None = None
        try:
            with open(self.log, "wb") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "bench.celery_tasks", "worker",
                     "--pool", "prefork", "--concurrency", str(workers),
                     "--loglevel", "WARNING",
                     # One worker alone: no cluster chatter to pay for.
                     "--without-gossip", "--without-mingle", "--without-heartbeat",
                     "--hostname", f"bench{os.getpid()}@localhost"],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            self.app = client_app(url)
            # Ready when it has answered a few tasks (textract is imported by the master
            # and forked with it into the children, as in the ceiling's pool).
            warm = self.run([(b"warm\n", "warm.txt", {})] * (workers * 4), workers, timeout=60)
            if any(r.status != 200 for r in warm.replies):
                raise RuntimeError(f"the celery worker failed its first tasks: {self.tail()}")
            master = psutil.Process(self.process.pid)
            assert self.redis.process is not None, "started above"
            self.procs = [psutil.Process(self.redis.process.pid), master,
                          *master.children()]
        except BaseException:
            self.close()
            raise

    def run(self, tasks: list[Task], in_flight: int, timeout: float = 600) -> Slice:
        """Every task, `in_flight` at a time, each sent and waited for by one client
        thread (as a web app's threads would); replies in the tasks' order."""
        replies: list[Reply | None] = [None] * len(tasks)
        next_index = iter(range(len(tasks)))
        lock = threading.Lock()

        def client() -> None:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                started = time.perf_counter()
                try:
                    text = self.app.send_task(EXTRACT, args=tasks[i]).get(timeout=timeout)
                    job = {"state": "done", "digest": digest(text)}
                    status = 200
                except Exception as exc:  # the failure is the figure: counted, not raised
                    if self.process is None or self.process.poll() is not None:
                        raise RuntimeError(f"the celery worker died: {self.tail()}") from exc
                    job, status = {"state": "failed", "error": repr(exc)[:200]}, 500
                replies[i] = Reply(status, time.perf_counter() - started, job)

        procs = getattr(self, "procs", [])
        cpu, started = cpu_seconds(procs), time.perf_counter()
        with ThreadPoolExecutor(in_flight) as pool:
            for future in [pool.submit(client) for _ in range(in_flight)]:
                future.result()
        seconds = time.perf_counter() - started
        return Slice(len(tasks), seconds, cpu_seconds(procs) - cpu,
                     replies=[r for r in replies if r is not None])

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def close(self) -> None:
        """Stop the worker (a warm shutdown, then SIGKILL to whatever of it is left, by
        pid) and its redis-server, and remove their folder."""
        children: list[psutil.Process] = []
        if self.process is not None:
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(self.process.pid).children(recursive=True)
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        if hasattr(self, "app"):
            self.app.close()
        self.redis.stop()
        shutil.rmtree(self.root, ignore_errors=True)
