"""Fault-injection kit: fake tools that are real executables, and a small stack client.

The executables in this folder (e.g. `pdftotext`) go first on the workers' PATH through
the stack env; each logs its pids and reads its behaviour from a mode file under its own
folder, so a test can switch a tool from broken to working while the stack runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import psutil

from devtools.stack import BIN, Stack, wait_for
from tests.conftest import CORPUS

FAKES = Path(__file__).resolve().parent
PDF = CORPUS / "textract-tests" / "pdf" / "standardized_text.pdf"
DOCX = CORPUS / "textract-tests" / "docx" / "standardized_text.docx"
TXT = CORPUS / "textract-tests" / "txt" / "standardized_text.txt"
FOX = "thequickbrownfoxjumpsoverthelazydog"
FINAL = ("done", "failed")
HUNG = "sleep 1000000"  # what a fake tool in mode hang runs as (exec'd by the script)


class FakeTools:
    """The state folder of the fake tools of one stack: their modes and their pids."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def env(self, **settings: object) -> dict[str, str]:
        """Stack env that puts the fakes first on PATH, plus the given settings."""
        path = f"{FAKES}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        # TOOL_ENV: the workers withhold every other variable from the tools they run.
        return {"PATH": path, "FAKE_TOOL_DIR": str(self.root), "TOOL_ENV": "FAKE_TOOL_DIR",
                **{k: str(v) for k, v in settings.items()}}

    def mode(self, tool: str, mode: str) -> None:
        # Rename, so a tool starting at this moment reads the old mode or the new one.
        tmp = self.root / f".{tool}.mode"
        tmp.write_text(mode)
        tmp.replace(self.root / f"{tool}.mode")

    def pids(self) -> list[int]:
        path = self.root / "pids"
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def running(self) -> list[int]:
        """Pids the fakes ran under that are still alive (zombies count as gone)."""
        alive = []
        for pid in self.pids():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                # Same pid, same process: ours carry our FAKE_TOOL_DIR (pids get reused).
                if (proc.status() != psutil.STATUS_ZOMBIE
                        and proc.environ().get("FAKE_TOOL_DIR") == str(self.root)):
                    alive.append(pid)
        return alive

    def worker_of_running_tool(self, younger_than: float | None = None,
                               command: str | None = None) -> psutil.Process | None:
        """The pool child running one of our fake tools right now (its tool's parent);
        with `younger_than`, only a tool started less than that many seconds ago; with
        `command`, only one whose command line holds it (HUNG: a tool in mode hang, not a
        fake tesseract passing a page to the real one meanwhile)."""
        for pid in self.running():
            with contextlib.suppress(psutil.Error):
                tool = psutil.Process(pid)
                if younger_than is not None and time.time() - tool.create_time() >= younger_than:
                    continue
                if command is not None and command not in " ".join(tool.cmdline()):
                    continue
                parent = tool.parent()
                while parent is not None and "daemon.pool" not in " ".join(parent.cmdline()):
                    parent = parent.parent()
                if parent is not None:
                    return parent
        return None


# --- talking to the api -------------------------------------------------------------
def request(stack: Stack, method: str, path: str, body: bytes | None = None,
            timeout: float = 10.0) -> tuple[int, dict, dict]:
    """(status, JSON body or {}, headers) of one api call; HTTP errors are answers too."""
    req = urllib.request.Request(f"{stack.url}{path}", data=body, method=method,
                                 headers={"X-API-Key": stack.api_key})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, headers = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        status, raw, headers = exc.code, exc.read(), dict(exc.headers)
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {"raw": raw.decode("utf-8", "replace")}
    return status, data, headers


def submit(stack: Stack, document: Path | bytes, filename: str | None = None) -> str:
    """Upload a document; returns the job id of its 202."""
    data = document.read_bytes() if isinstance(document, Path) else document
    name = filename or (document.name if isinstance(document, Path) else "document.bin")
    status, body, _ = request(stack, "POST", f"/v1/jobs?filename={name}", data)
    assert status == 202, (status, body)
    return body["id"]


def job(stack: Stack, job_id: str) -> dict:
    status, body, _ = request(stack, "GET", f"/v1/jobs/{job_id}")
    assert status == 200, (status, body)
    return body


def wait_final(stack: Stack, job_id: str, timeout: float) -> dict:
    """Poll until the job is done or failed; returns its JSON (with text)."""
    def final() -> dict | None:
        found = job(stack, job_id)
        return found if found["state"] in FINAL else None

    return wait_for(final, timeout, f"job {job_id} to finish", interval=0.1)


def submit_many(stack: Stack, document: Path | bytes, count: int,
                filename: str | None = None) -> list[str]:
    """Upload `document` `count` times; returns the job ids."""
    return [submit(stack, document, filename) for _ in range(count)]


def wait_all(stack: Stack, job_ids: list[str], timeout: float) -> list[dict]:
    """wait_final for each job, in order."""
    return [wait_final(stack, job_id, timeout) for job_id in job_ids]


# --- reading the workers' side ------------------------------------------------------
def events(stack: Stack, name: str | None = None, program: str = "workers",
           **match: object) -> list[dict]:
    """Log events of `program`, optionally only `name` and those with `match` fields."""
    return [e for e in stack.log_events(program)
            if (name is None or e.get("event") == name)
            and all(e.get(k) == v for k, v in match.items())]


def done_counts(stack: Stack) -> Counter:
    """job.done events per job id: more than one would be a second result."""
    return Counter(e["job_id"] for e in events(stack, "job.done"))


def summary_lines(stack: Stack, job_ids: str | list[str], event: str = "job.done",
                  count: int = 1, timeout: float = 10) -> list[dict]:
    """The jobs' `event` lines once each job has `count` of them. A child's summary line
    reaches the log through the pool master (daemon/pool/relay.py), up to 10 ms after
    the result a client already has: read it after a result by waiting for it."""
    ids = [job_ids] if isinstance(job_ids, str) else job_ids

    def found() -> list[dict] | None:
        lines = [e for e in events(stack, event) if e.get("job_id") in ids]
        per_job = Counter(e["job_id"] for e in lines)
        return lines if all(per_job[i] >= count for i in ids) else None

    return wait_for(found, timeout, f"{count} {event} line(s) for each of {len(ids)} job(s)")


def pool_children(stack: Stack) -> list[psutil.Process]:
    """The pool master's live children (one per slot)."""
    with contextlib.suppress(psutil.Error):
        return [c for c in psutil.Process(stack.program_pid("workers")).children()
                if c.status() != psutil.STATUS_ZOMBIE]
    return []


def gone(pids: list[int]) -> bool:
    """True when none of `pids` is a live process (a zombie is dead, only unreaped)."""
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
    return True


def program_state(stack: Stack, program: str) -> str:
    """RUNNING, STARTING, STOPPED, FATAL, ... as `supervisorctl status` reports it."""
    parts = stack.supervisorctl("status", program).split()
    return parts[1] if len(parts) > 1 else ""
