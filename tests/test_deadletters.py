"""Dead-letter administration against a real stack: jobs made to die by a fake pdftotext
that kills its worker (tests/fakes), then listed, read, replayed and purged through the
api and through `python -m daemon.health.dlq`, with the audit lines each action leaves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import orjson
import pytest

from daemon.store import DEAD_LETTERS, DEPTH, history_key, payload_key
from devtools.stack import Stack, wait_for
from tests.conftest import squash
from tests.fakes import FOX, PDF, FakeTools, events, request, submit, wait_final

pytestmark = pytest.mark.slow
TENANT_KEY = "acme-key-" + "x" * 20  # a tenant's key: not an admin key


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> FakeTools:
    return FakeTools(tmp_path_factory.mktemp("fake-tools"))


@pytest.fixture(scope="module")
def stack(tools: FakeTools) -> Iterator[Stack]:
    tools.mode("pdftotext", "pass")
    stack = Stack(env=tools.env(WORKER_PROCESSES=1, MAX_ATTEMPTS=2,
                                CIRCUIT_BREAKER_FAILURE_THRESHOLD=100))
    stack.env["API_KEY"] = f"{stack.api_key},acme:{TENANT_KEY}"
    stack.start()
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_letters_left(stack: Stack, tools: FakeTools) -> Iterator[None]:
    tools.mode("pdftotext", "pass")
    yield
    with stack.redis() as r:
        r.delete(DEAD_LETTERS)


def poisoned(stack: Stack, tools: FakeTools, mode: str = "signal-parent:KILL") -> dict:
    """A job that dies MAX_ATTEMPTS times and is dead-lettered; its final JSON. Each is a
    document of its own (a comment after %%EOF), or the second would be refused at the
    door as quarantined, or answered from the result cache."""
    tools.mode("pdftotext", mode)
    job_id = submit(stack, PDF.read_bytes() + f"\n% {uuid.uuid4()}\n".encode(), "poison.pdf")
    found = wait_final(stack, job_id, 40)
    assert found["state"] == "failed"
    tools.mode("pdftotext", "pass")
    return found


def letters(stack: Stack, query: str = "") -> dict:
    status, body, _ = request(stack, "GET", f"/v1/dead-letters{query}")
    assert status == 200, body
    return body


def letter_of(stack: Stack, job_id: str) -> dict:
    return next(d for d in letters(stack)["dead_letters"] if d["job_id"] == job_id)


def lift_quarantine(stack: Stack, dead_id: str) -> None:
    """The operator's first step before replaying a job that killed its workers."""
    sha256 = request(stack, "GET", f"/v1/dead-letters/{dead_id}")[1]["record"]["sha256"]
    assert request(stack, "DELETE", f"/v1/quarantine/{sha256}")[0] == 204


def as_tenant(stack: Stack, method: str, path: str) -> int:
    req = urllib.request.Request(f"{stack.url}{path}", method=method,
                                 headers={"X-API-Key": TENANT_KEY})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def audit_lines(stack: Stack, action: str) -> list[dict]:
    return events(stack, "audit", program="api", action=action)


def dlq(stack: Stack, *args: str, textractd: bool = False) -> subprocess.CompletedProcess:
    """`python -m daemon.health.dlq ARGS`, or `textractd dlq ARGS` (the console script)."""
    env = {**os.environ, "REDIS_URL": stack.redis_url, "TEXTRACTD_HOME": str(stack.root)}
    command = ([sys.executable, "-c", "import sys; from daemon.cli.main import main; "
                "sys.exit(main())", "dlq"] if textractd
               else [sys.executable, "-m", "daemon.health.dlq"])
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True,
                          timeout=30)


def test_a_dead_job_is_listed_shown_with_its_history_and_filtered_by_code(stack, tools):
    dead = poisoned(stack, tools)

    page = letters(stack)
    assert page["total"] == 1 and page["next"] is None
    [summary] = page["dead_letters"]
    assert summary["job_id"] == dead["id"]
    assert summary["error"]["code"] == "too_many_attempts" and summary["attempts"] == 2
    assert summary["request_id"] == dead["request_id"]
    assert letters(stack, "?code=corrupt_document")["dead_letters"] == []
    assert len(letters(stack, "?code=too_many_attempts")["dead_letters"]) == 1

    status, shown, _ = request(stack, "GET", f"/v1/dead-letters/{summary['id']}")
    assert status == 200
    assert [s["event"] for s in shown["history"]] == ["delivered", "failed"] * 2
    assert shown["record"]["id"] == dead["id"] and shown["record"]["state"] == "failed"
    status, missing, _ = request(stack, "GET", "/v1/dead-letters/1-0")
    assert status == 404 and missing["error"]["code"] == "not_found"
    status, bad, _ = request(stack, "GET", "/v1/dead-letters?code=no_such_code")
    assert status == 400 and bad["error"]["code"] == "bad_request"


def test_the_list_is_paged_newest_first(stack, tools):
    with stack.redis() as r:  # letters as FINISH writes them, without waiting for deaths
        ids = [r.xadd(DEAD_LETTERS, {"job": f"{n:032x}", "entry": "1-0",
                                     "record": orjson.dumps({"error_code": "disk_full"}),
                                     "history": "[]"}).decode() for n in range(5)]
    first = letters(stack, "?limit=2")
    assert [d["id"] for d in first["dead_letters"]] == ids[:-3:-1]
    second = letters(stack, f"?limit=2&before={first['next']}")
    third = letters(stack, f"?limit=2&before={second['next']}")
    seen = [d["id"] for p in (first, second, third) for d in p["dead_letters"]]
    assert seen == ids[::-1] and third["next"] is None


def test_replaying_queues_the_job_with_fresh_attempts_and_keeps_its_history(stack, tools):
    dead = poisoned(stack, tools)
    dead_id = letter_of(stack, dead["id"])["id"]
    lift_quarantine(stack, dead_id)

    status, body, headers = request(stack, "POST", f"/v1/dead-letters/{dead_id}/replay")
    assert status == 202 and body == {"id": dead_id, "job_id": dead["id"], "state": "queued"}
    assert headers["Location"] == f"/v1/jobs/{dead['id']}"
    done = wait_final(stack, dead["id"], 30)

    assert done["state"] == "done" and squash(done["text"]) == FOX
    assert done["attempts"] == 1  # a fresh count, not the third attempt
    with stack.redis() as r:
        steps = [orjson.loads(s) for s in r.lrange(history_key(dead["id"]), 0, -1)]
        assert int(r.get(DEPTH) or 0) == 0
        assert not r.exists(payload_key(dead["id"]))  # done: the document is not kept
    assert [s["event"] for s in steps] == ["delivered", "failed"] * 2 + ["replayed",
                                                                         "delivered"]
    assert steps[4]["by"] == "default"
    assert letters(stack)["total"] == 0
    status, again, _ = request(stack, "POST", f"/v1/dead-letters/{dead_id}/replay")
    assert status == 404 and again["error"]["code"] == "not_found"
    [line] = [e for e in audit_lines(stack, "dead_letter.replay")
              if e["dead_letter_id"] == dead_id]
    assert line["tenant"] == "default" and line["job_id"] == dead["id"]
    assert stack.api_key not in (stack.root / "logs" / "api.log").read_text()


def test_a_replayed_job_that_still_poisons_ends_dead_again_not_in_a_loop(stack, tools):
    dead = poisoned(stack, tools)
    dead_id = letter_of(stack, dead["id"])["id"]
    lift_quarantine(stack, dead_id)
    tools.mode("pdftotext", "signal-parent:KILL")

    status, _, _ = request(stack, "POST", f"/v1/dead-letters/{dead_id}/replay")
    assert status == 202
    wait_for(lambda: letters(stack)["total"] == 1 and letter_of(stack, dead["id"])["id"]
             != dead_id, 40, "the replayed job to be dead-lettered again")

    again = wait_final(stack, dead["id"], 5)
    assert again["state"] == "failed" and again["attempts"] == 2
    assert again["error"]["code"] == "too_many_attempts"
    sha256 = request(stack, "GET", f"/v1/dead-letters/{letter_of(stack, dead['id'])['id']}"
                     )[1]["record"]["sha256"]
    quarantined = request(stack, "GET", "/v1/quarantine")[1]["documents"]
    assert sha256 in [d["sha256"] for d in quarantined]  # quarantined again
    # Two deaths for its first life, two for the replay, and then no more.
    deaths = lambda: len(events(stack, "child.exited", job_id=dead["id"]))  # noqa: E731
    wait_for(lambda: deaths() == 4, 10, "the fourth death to be logged")
    with stack.redis() as r:
        assert int(r.get(DEPTH) or 0) == 0
        assert r.exists(payload_key(dead["id"]))  # kept again for another replay
    assert deaths() == 4


def test_purging_removes_the_letter_and_the_document_kept_for_replay(stack, tools):
    dead = poisoned(stack, tools)
    dead_id = letter_of(stack, dead["id"])["id"]

    status, _, _ = request(stack, "DELETE", f"/v1/dead-letters/{dead_id}")
    assert status == 204
    with stack.redis() as r:
        assert not r.exists(payload_key(dead["id"]))
    assert request(stack, "GET", f"/v1/dead-letters/{dead_id}")[0] == 404
    assert request(stack, "DELETE", f"/v1/dead-letters/{dead_id}")[0] == 404
    # The job's own record stays, so its client still reads why it failed.
    assert request(stack, "GET", f"/v1/jobs/{dead['id']}")[1]["state"] == "failed"
    [line] = [e for e in audit_lines(stack, "dead_letter.purge")
              if e["dead_letter_id"] == dead_id]
    assert line["tenant"] == "default"


def test_bulk_replay_and_purge_act_on_one_error_code_only(stack, tools):
    killed = poisoned(stack, tools)  # too_many_attempts
    broken = poisoned(stack, tools, "segv")  # extractor_failed on every attempt
    assert broken["error"]["code"] == "extractor_failed"

    status, body, _ = request(stack, "POST", "/v1/dead-letters/replay?code=extractor_failed")
    assert status == 200 and body["replayed"] == [broken["id"]] and body["skipped"] == []
    assert wait_final(stack, broken["id"], 30)["state"] == "done"
    assert [d["job_id"] for d in letters(stack)["dead_letters"]] == [killed["id"]]
    assert request(stack, "POST", "/v1/dead-letters/purge")[0] == 400  # code is required

    status, body, _ = request(stack, "POST", "/v1/dead-letters/purge?code=*")
    assert status == 200 and body["purged"] == [killed["id"]]
    assert letters(stack)["total"] == 0
    [line] = audit_lines(stack, "dead_letter.bulk_replay")
    assert line["code"] == "extractor_failed" and line["replayed"] == 1


def test_dead_letters_need_an_admin_key(stack, tools):
    dead = poisoned(stack, tools)
    dead_id = letter_of(stack, dead["id"])["id"]
    for method, path in (("GET", "/v1/dead-letters"), ("GET", f"/v1/dead-letters/{dead_id}"),
                         ("POST", f"/v1/dead-letters/{dead_id}/replay"),
                         ("DELETE", f"/v1/dead-letters/{dead_id}"),
                         ("POST", "/v1/dead-letters/purge?code=*"),
                         ("GET", "/v1/console")):
        assert as_tenant(stack, method, path) == 403, path
    assert letters(stack)["total"] == 1  # nothing was done by the refused calls


def test_the_command_line_lists_shows_replays_and_purges(stack, tools):
    first, second = poisoned(stack, tools, "segv"), poisoned(stack, tools, "segv")

    listed = dlq(stack, "list", "--json", textractd=True)
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert [d["job_id"] for d in page["dead_letters"]] == [second["id"], first["id"]]
    ids = {d["job_id"]: d["id"] for d in page["dead_letters"]}
    shown = dlq(stack, "show", ids[first["id"]])
    assert json.loads(shown.stdout)["history"][0]["event"] == "delivered"

    replayed = dlq(stack, "replay", ids[first["id"]])
    assert replayed.returncode == 0 and f"job {first['id']} queued" in replayed.stdout
    assert wait_final(stack, first["id"], 30)["state"] == "done"
    audit = json.loads(replayed.stderr.strip().splitlines()[-1])
    assert audit["event"] == "audit" and audit["action"] == "dead_letter.replay"
    assert audit["tenant"].startswith("cli:")

    refused = dlq(stack, "purge", "--code", "extractor_failed")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    purged = dlq(stack, "purge", "--code", "extractor_failed", "--yes")
    assert purged.returncode == 0 and f"job {second['id']} purged" in purged.stdout
    assert dlq(stack, "show", ids[second["id"]]).returncode == 1
    assert dlq(stack, "replay", "nonsense").returncode == 2
    usage = dlq(stack, "--help", textractd=True)
    assert usage.returncode == 0 and usage.stdout.startswith("usage: textractd dlq ")


def test_a_dead_job_its_client_deleted_cannot_be_replayed(stack, tools):
    dead = poisoned(stack, tools)
    dead_id = letter_of(stack, dead["id"])["id"]
    assert request(stack, "DELETE", f"/v1/jobs/{dead['id']}")[0] == 204

    status, body, _ = request(stack, "POST", f"/v1/dead-letters/{dead_id}/replay")
    assert status == 409 and body["error"]["code"] == "not_replayable"
    assert body["error"]["job_id"] == dead["id"]
    assert letters(stack)["total"] == 1  # still there, for an operator to purge
    assert request(stack, "GET", f"/v1/jobs/{dead['id']}")[0] == 404  # not brought back


def test_a_quarantined_document_is_not_replayed_until_its_quarantine_is_lifted(stack, tools):
    dead = poisoned(stack, tools)  # it killed its worker on every attempt: quarantined
    dead_id = letter_of(stack, dead["id"])["id"]
    sha256 = request(stack, "GET", f"/v1/dead-letters/{dead_id}")[1]["record"]["sha256"]

    status, body, _ = request(stack, "POST", f"/v1/dead-letters/{dead_id}/replay")
    assert status == 409 and body["error"]["code"] == "not_replayable"
    assert body["error"]["sha256"] == sha256 and "/v1/quarantine" in body["error"]["message"]
    refused = dlq(stack, "replay", dead_id)
    assert refused.returncode == 1 and f"quarantine lift {sha256}" in refused.stderr
    assert letters(stack)["total"] == 1

    assert request(stack, "DELETE", f"/v1/quarantine/{sha256}")[0] == 204
    assert request(stack, "POST", f"/v1/dead-letters/{dead_id}/replay")[0] == 202
    assert wait_final(stack, dead["id"], 30)["state"] == "done"
