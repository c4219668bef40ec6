"""Attacks on the pool through a running stack, as a client with a valid key makes them,
and what a second key's normal jobs of the same family see during and after each.

Before (issue 13.1): one upload that dies by deadline on each of its attempts counted as
that many consecutive failures of its extractor family and opened the family's breaker
for everyone; another key's jobs then waited out the recovery timeout. Now a death by
deadline or memory is the document's cost (the document fails, and after MAX_ATTEMPTS
deaths its hash is quarantined, issue 14.5), and the breaker counts a failure once per
distinct document.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from daemon.store import breaker_key
from devtools.stack import Stack, wait_for
from tests.conftest import CORPUS, squash
from tests.fakes import FAKES, FOX, PDF

PS_LOOP = b"%!PS\n{ } loop\n"  # 14 bytes: ps2ascii spins until the deadline
NORMAL_PS = CORPUS / "textract-tests" / "ps" / "standardized_text.ps"
NORMAL_TXT = CORPUS / "textract-tests" / "txt" / "standardized_text.txt"


def deep_html(levels: int, variant: int) -> bytes:
    """Nested <div>s: textract's HTML parser is superlinear in the depth."""
    return (f"<html><body><!-- variant {variant} -->" + "<div>" * levels + "deep"
            + "</div>" * levels + "</body></html>").encode()


def call(stack: Stack, key: str, method: str, path: str, body: bytes | None = None,
         timeout: float = 60.0) -> tuple[int, dict | str]:
    req = urllib.request.Request(f"{stack.url}{path}", data=body, method=method,
                                 headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    if "json" in ctype:
        return status, json.loads(raw) if raw else {}
    return status, raw.decode("utf-8", "replace")


def keys_stack(make_stack, **settings: object) -> tuple[Stack, str, str]:
    """A stack with two keys: the attacker's and another client's."""
    attacker, victim = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    stack = make_stack(env={"API_KEY": f"{attacker},{victim}",
                            **{k: str(v) for k, v in settings.items()}})
    return stack, attacker, victim


def timed_extract(stack: Stack, key: str, document, name: str) -> tuple[float, str]:
    """(seconds, text) of a normal client's POST /v1/extract."""
    started = time.perf_counter()
    status, text = call(stack, key, "POST", f"/v1/extract?filename={name}&wait=60",
                        document.read_bytes())
    took = time.perf_counter() - started
    assert status == 200, (status, text)
    return took, text


def submit(stack: Stack, key: str, data: bytes, name: str) -> str:
    status, body = call(stack, key, "POST", f"/v1/jobs?filename={name}", data)
    assert status == 202, (status, body)
    return body["id"]


def job(stack: Stack, key: str, job_id: str) -> dict:
    status, body = call(stack, key, "GET", f"/v1/jobs/{job_id}")
    assert status == 200, (status, body)
    return body


def breaker(stack: Stack, family: str) -> dict[str, str]:
    with stack.redis() as r:
        return {k.decode(): v.decode() for k, v in r.hgetall(breaker_key(family)).items()}


def test_a_postscript_loop_dying_at_every_deadline_never_opens_the_breaker_and_is_refused_next(
        make_stack) -> None:
    # SHUTDOWN_TIMEOUT: the stack's stop does not wait out a loop still running.
    stack, attacker, victim = keys_stack(make_stack, WORKER_PROCESSES=2, JOB_TIMEOUT=2,
                                         MAX_ATTEMPTS=3, SHUTDOWN_TIMEOUT=2)
    baseline, text = timed_extract(stack, victim, NORMAL_PS, "normal.ps")
    assert FOX in squash(text)

    attack = submit(stack, attacker, PS_LOOP, "loop.ps")
    wait_for(lambda: job(stack, attacker, attack)["state"] == "processing", 10,
             "the attack to take a worker")
    during, text = timed_extract(stack, victim, NORMAL_PS, "normal.ps")
    assert FOX in squash(text)
    failed = wait_for(lambda: (j := job(stack, attacker, attack))["state"] == "failed" and j,
                      3 * (2 + 2) + 15, "the attack job to fail")
    after, text = timed_extract(stack, victim, NORMAL_PS, "normal.ps")

    assert FOX in squash(text)
    assert failed["error"]["code"] == "extraction_timeout" and failed["attempts"] == 3
    state = breaker(stack, "postscript")
    assert state.get("state", "closed") == "closed", state
    assert int(state.get("total_failures", 0)) == 0, state
    assert during < 2.0 and after < 2.0, (baseline, during, after)
    # The same bytes again: refused at once, no worker risked.
    sha = hashlib.sha256(PS_LOOP).hexdigest()
    started = time.perf_counter()
    status, body = call(stack, attacker, "POST", "/v1/jobs?filename=again.ps", PS_LOOP)
    refused_in = time.perf_counter() - started
    assert (status, body["error"]["code"], body["error"]["sha256"]) == (
        422, "poison_document", sha)
    status, listed = call(stack, victim, "GET", "/v1/quarantine")
    assert status == 200 and [d["sha256"] for d in listed["documents"]] == [sha]
    assert listed["documents"][0]["error_code"] == "extraction_timeout"
    _, status_body = call(stack, victim, "GET", "/status")
    assert status_body["quarantine"] == {"documents": 1}
    _, metrics = call(stack, victim, "GET", "/metrics")
    assert metrics["quarantined_documents"] == 1
    _, prometheus = call(stack, victim, "GET", "/metrics?format=prometheus")
    assert "textractd_quarantined_documents 1.0" in prometheus
    # An operator lifts it: the bytes are accepted again.
    assert call(stack, victim, "DELETE", f"/v1/quarantine/{sha}")[0] == 204
    assert call(stack, victim, "DELETE", f"/v1/quarantine/{sha}")[0] == 404
    assert call(stack, victim, "DELETE", "/v1/quarantine/not-a-hash")[0] == 400
    again = submit(stack, attacker, PS_LOOP, "again.ps")
    assert call(stack, attacker, "DELETE", f"/v1/jobs/{again}")[0] == 204
    print(f"\n{len(PS_LOOP)}-byte PostScript loop: failed extraction_timeout after 3 "
          f"attempts, postscript breaker closed; another key's .ps extract took "
          f"{baseline:.2f} s before, {during:.2f} s during, {after:.2f} s after; the re-upload "
          f"was refused 422 poison_document in {refused_in * 1000:.1f} ms")


def test_deeply_nested_html_past_the_deadline_never_opens_the_python_breaker(
        make_stack) -> None:
    # The nesting guard refuses these at once (test_guards); here it is switched off to
    # test the second line of defence: what a deadline death may do to the breaker.
    stack, attacker, victim = keys_stack(make_stack, WORKER_PROCESSES=3, JOB_TIMEOUT=2,
                                         MAX_ATTEMPTS=2, MAX_NESTING_DEPTH=10**9,
                                         MAX_NESTING_WORK=10**12)
    baseline, text = timed_extract(stack, victim, NORMAL_TXT, "normal.txt")
    assert FOX in squash(text)

    # Two distinct hostile documents, four deaths: the old rule opened the breaker at 3.
    hostile = [deep_html(20_000, variant) for variant in range(2)]
    attacks = [submit(stack, attacker, doc, "deep.html") for doc in hostile]
    wait_for(lambda: any(job(stack, attacker, a)["state"] == "processing" for a in attacks),
             10, "the attack to take a worker")
    during, text = timed_extract(stack, victim, NORMAL_TXT, "normal.txt")
    assert FOX in squash(text)
    failed = [wait_for(lambda a=a: (j := job(stack, attacker, a))["state"] == "failed" and j,
                       2 * (2 + 2) + 20, "an attack job to fail") for a in attacks]
    after, text = timed_extract(stack, victim, NORMAL_TXT, "normal.txt")

    assert FOX in squash(text)
    assert {f["error"]["code"] for f in failed} <= {"extraction_timeout", "memory_limit"}
    state = breaker(stack, "python")
    assert state.get("state", "closed") == "closed", state
    assert int(state.get("total_failures", 0)) == 0, state
    assert during < 2.0 and after < 2.0, (baseline, during, after)
    # Both are quarantined; the operator's command lists and lifts them.
    hashes = sorted(hashlib.sha256(doc).hexdigest() for doc in hostile)
    cli = [sys.executable, "-m", "daemon.health.quarantine"]
    env = {**os.environ, "TEXTRACTD_HOME": str(stack.root)}
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True,
                            check=True, timeout=30).stdout.splitlines()
    assert sorted(json.loads(line)["sha256"] for line in listed) == hashes
    lifted = subprocess.run([*cli, "lift", hashes[0]], env=env, capture_output=True,
                            text=True, timeout=30)
    assert lifted.returncode == 0, lifted.stderr
    missing = subprocess.run([*cli, "lift", hashes[0]], env=env, capture_output=True,
                             text=True, timeout=30)
    assert missing.returncode == 1
    _, left = call(stack, victim, "GET", "/v1/quarantine")
    assert [d["sha256"] for d in left["documents"]] == [hashes[1]]
    print(f"\ntwo 20,000-deep HTML documents: failed {[f['error']['code'] for f in failed]}, "
          f"python breaker closed; another key's .txt extract took {baseline:.2f} s before, "
          f"{during:.2f} s during, {after:.2f} s after")


# --- PostScript writing to its temporary folder (issue 13.2) -------------------------------
# -dSAFER lets Ghostscript write temporary files, in TMPDIR: one file as large as it likes,
# or many files each below any per-file bound.
PS_ONE_BIG_FILE = b"""%!PS
/f null (w) .tempfile exch pop def
/s 65536 string def
{ f s writestring } loop
"""
PS_MANY_FILES = b"""%!PS
/s 65536 string def
{ null (w) .tempfile exch pop /f exch def 0 1 30 { pop f s writestring } for } loop
"""


def spool_bytes(stack: Stack) -> int:
    return sum(p.stat().st_size for p in (stack.root / "var" / "spool").rglob("*")
               if p.is_file())


@pytest.mark.parametrize("document", [PS_ONE_BIG_FILE, PS_MANY_FILES],
                         ids=["one-big-file", "many-2mb-files"])
def test_postscript_writing_to_its_temp_folder_fails_output_limit_and_leaves_nothing(
        make_stack, document) -> None:
    limit_mb = 16
    stack, attacker, victim = keys_stack(make_stack, WORKER_PROCESSES=2, JOB_TIMEOUT=20,
                                         JOB_DISK_MAX_MB=limit_mb)
    attack = submit(stack, attacker, document, "writer.ps")
    peak = 0

    def final() -> dict | None:
        nonlocal peak
        peak = max(peak, spool_bytes(stack))
        found = job(stack, attacker, attack)
        return found if found["state"] in ("done", "failed") else None

    started = time.perf_counter()
    failed = wait_for(final, 20, "the writing job to end", interval=0.02)
    took = time.perf_counter() - started

    assert failed["state"] == "failed" and failed["error"]["code"] == "output_limit", failed
    assert failed["attempts"] == 1  # the document's doing: not retried
    assert "spool" not in failed["error"]["message"]
    assert took < 10  # stopped by the bound, not by the 20 s deadline
    # Bounded while it ran: each file by RLIMIT_FSIZE exactly; in all, by the limit plus
    # what the tools write before the watch thread's next look (every 50 ms, later on a
    # loaded host: 20-180 MB measured alone, 437 MB once during the whole suite). gs
    # writes about 700 MB a second: the bound allows a look a second late. Unbounded, it
    # wrote some 14 GB before this 20 s deadline.
    assert peak <= (limit_mb + 700) * 1024 * 1024, peak
    wait_for(lambda: spool_bytes(stack) == 0, 5, "the job's folder to be removed")
    state = breaker(stack, "postscript")
    assert int(state.get("total_failures", 0)) == 0, state
    took_normal, text = timed_extract(stack, victim, NORMAL_PS, "normal.ps")
    assert FOX in squash(text)
    print(f"\n{len(document)}-byte PostScript writing to TMPDIR: output_limit after "
          f"{took:.2f} s, spool peak {peak / 1048576:.1f} MB (limit {limit_mb} MB), empty "
          f"after; another key's .ps extract {took_normal:.2f} s")


# --- secrets and paths (issue 13.6) ----------------------------------------------------------
def test_the_tools_a_worker_runs_see_no_api_key_nor_redis_password(make_stack, tools) -> None:
    tools.mode("pdftotext", "env")
    secret = secrets.token_urlsafe(12)  # any secret an operator exports to the service
    stack = make_stack(env=tools.env(WORKER_PROCESSES=1, LC_ALL="C.UTF-8",
                                     CALLBACK_SECRET=secret))
    _took, text = timed_extract(stack, stack.api_key, PDF, "fox.pdf")

    assert FOX in squash(text)
    seen = dict(line.split("=", 1) for line in
                (tools.root / "env").read_text().splitlines() if "=" in line)
    assert stack.api_key not in (tools.root / "env").read_text()
    assert secret not in (tools.root / "env").read_text()
    assert not {"API_KEY", "REDIS_URL", "CALLBACK_SECRET", "TEXTRACTD_HOME"} & set(seen)
    # what the tool does need is there: its programs, its locale, the job's own folder
    assert seen["PATH"].split(os.pathsep)[0] == str(FAKES)
    assert seen["LC_ALL"] == "C.UTF-8" and seen["FAKE_TOOL_DIR"] == str(tools.root)
    assert seen["TMPDIR"].endswith("/slot-0/job")  # the job folder, not the idle tmp
    print(f"\nthe tool's environment: {sorted(seen)}")


def test_health_detailed_names_folders_without_the_install_path(make_stack) -> None:
    stack = make_stack(env={"WORKER_PROCESSES": "1"})
    status, body = call(stack, stack.api_key, "GET", "/health/detailed")

    assert status in (200, 503)
    raw = json.dumps(body)
    assert str(stack.root) not in raw
    disk = body["checks"]["disk"][0]["figures"]
    assert {figure["path"] for figure in disk.values()} <= {"var", "logs", "."}
    assert body["checks"]["tempfiles"][0]["figures"]["path"] == "var/spool"
