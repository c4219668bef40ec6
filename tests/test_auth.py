"""Who may come in: API keys on every route, rotation, refusal to start without a key.

The api is also started on its own (`python -m daemon.api`, no supervisord) where only its
start-up is under test: the refusal with an empty key and the ALLOW_NO_AUTH opt-out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from daemon.config import ROOT
from devtools.stack import BIN, Stack, free_port, wait_for
from tests.client import Client
from tests.conftest import RedisServer
from tests.test_hostile import error_of, raw_request, request_head

pytestmark = pytest.mark.slow

OLD_KEY = "old-key-0123456789abcdefghij"
NEW_KEY = "new-key-klmnopqrstuvwxyz9876"
JOB = "0123456789abcdef0123456789abcdef"
# Every route a client can call, and some it cannot: the key is checked before routing, so
# an unknown path or method tells a stranger nothing.
ROUTES = [("GET", "/v1/formats"), ("POST", "/v1/jobs"), ("POST", "/v1/extract"),
          ("GET", f"/v1/jobs/{JOB}"), ("GET", f"/v1/jobs/{JOB}/text"),
          ("DELETE", f"/v1/jobs/{JOB}"), ("GET", "/health/detailed"), ("GET", "/status"),
          ("GET", "/metrics"), ("GET", "/no/such/route"), ("PUT", "/v1/jobs"),
          ("GET", "/v1/quarantine"), ("DELETE", f"/v1/quarantine/{'0' * 64}")]


@pytest.fixture(scope="module")
def keyed() -> Iterator[Stack]:
    """A stack with two keys (rotation) and no workers: only the front door is tested."""
    stack = Stack(workers=False, env={"API_KEY": f" {OLD_KEY} , {NEW_KEY},"}).start()
    stack.api_key = NEW_KEY
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


def call(stack: Stack, method: str, path: str, key: str | None = None,
         headers: dict[str, str] | None = None):
    return Client(stack, key=key, timeout=30).request(method, path, headers=headers)


# --- every route -----------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_but_health_answers_401_without_a_key(keyed: Stack, method: str,
                                                          path: str) -> None:
    reply = call(keyed, method, path)
    assert "X-API-Key" in error_of(reply, 401, "unauthorized")["message"]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_but_health_answers_403_to_a_wrong_key(keyed: Stack, method: str,
                                                           path: str) -> None:
    error_of(call(keyed, method, path, key="not-a-key"), 403, "forbidden")
    bearer = call(keyed, method, path, headers={"Authorization": "Bearer not-a-key"})
    error_of(bearer, 403, "forbidden")


def test_health_answers_without_a_key_and_with_a_wrong_one(keyed: Stack) -> None:
    assert call(keyed, "GET", "/health").status == 200
    assert call(keyed, "GET", "/health", key="not-a-key").status == 200


@pytest.mark.parametrize("key", [NEW_KEY[:-1], NEW_KEY + "x", NEW_KEY.upper(),
                                 f"{OLD_KEY},{NEW_KEY}", f"{NEW_KEY} {NEW_KEY}", "x" * 5000])
def test_a_key_that_is_almost_right_is_refused(keyed: Stack, key: str) -> None:
    error_of(call(keyed, "GET", "/v1/formats", key=key), 403, "forbidden")


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Basic {NEW_KEY}"}, {"Authorization": "Bearer "},
    {"Authorization": NEW_KEY}, {"X-Api-Token": NEW_KEY}, {"X-API-Key": ""}],
    ids=["basic", "empty-bearer", "no-scheme", "other-header", "empty-header"])
def test_a_key_sent_some_other_way_counts_as_no_key(keyed: Stack, headers: dict) -> None:
    error_of(call(keyed, "GET", "/v1/formats", headers=headers), 401, "unauthorized")


def test_a_key_in_the_query_string_is_not_accepted(keyed: Stack) -> None:
    reply = call(keyed, "GET", f"/v1/formats?api_key={NEW_KEY}&key={NEW_KEY}")
    error_of(reply, 401, "unauthorized")


def test_a_key_with_non_utf8_bytes_is_refused_with_403(keyed: Stack) -> None:
    reply = raw_request(keyed.port, request_head("GET", "/v1/formats", None, Connection="close")
                        .replace(b"\r\n\r\n", b"\r\nX-API-Key: \xff\xfe\xe9key\r\n\r\n"))
    error_of(reply, 403, "forbidden")


# --- rotation ---------------------------------------------------------------------------
def test_both_keys_of_a_rotation_are_accepted_in_either_header(keyed: Stack) -> None:
    for key in (OLD_KEY, NEW_KEY):
        assert call(keyed, "GET", "/v1/formats", key=key).status == 200
        bearer = call(keyed, "GET", "/v1/formats", headers={"Authorization": f"Bearer {key}"})
        assert bearer.status == 200
    upload = Client(keyed, key=OLD_KEY).upload("fox.txt", b"the quick brown fox")
    assert upload.status == 202
    # A job is not tied to the key that made it: the new key reads the old key's job.
    job = Client(keyed, key=NEW_KEY).job(upload.json()["id"])
    assert job.status == 200 and job.json()["state"] == "queued"


def test_no_key_reaches_a_log_line_or_redis(keyed: Stack) -> None:
    presented = ["wrong-key-that-must-not-be-logged-either"]
    for key in (OLD_KEY, NEW_KEY, *presented):
        call(keyed, "GET", "/v1/formats", key=key)
        call(keyed, "POST", "/v1/jobs", headers={"Authorization": f"Bearer {key}"})
        Client(keyed, key=key).upload("fox.txt", b"fox")
    lines = 0
    for log in (keyed.root / "logs").glob("*.log"):
        text = log.read_bytes()
        lines += text.count(b"\n")
        for key in (OLD_KEY, NEW_KEY, *presented):
            assert key.encode() not in text, f"{key} is in {log.name}"
    assert lines > 10  # the logs were written: the check above looked at something
    with keyed.redis() as r:
        for name in r.scan_iter("*"):
            assert not any(k.encode() in name for k in (OLD_KEY, NEW_KEY))
            if r.type(name) == b"hash":
                values = b"".join(r.hvals(name))
                assert not any(k.encode() in values for k in (OLD_KEY, NEW_KEY))


def test_a_key_in_a_request_the_parser_rejects_never_reaches_the_logs(make_stack) -> None:
    stack = make_stack(workers=False)
    key = stack.api_key.encode()
    for head in (b"X-API-Key: " + key + b"\x01", b"X-API-Key " + key,
                 b"Authorization: Bearer " + key + b"\x00"):
        reply = raw_request(stack.port, b"GET /v1/formats HTTP/1.1\r\nHost: x\r\n" + head
                            + b"\r\nConnection: close\r\n\r\n")
        assert reply.status == 400

    def logs() -> bytes:
        return b"".join(p.read_bytes() for p in (stack.root / "logs").glob("*.log"))

    # The api logs a rejection as it answers it; supervisord writes the line out after.
    text = wait_for(lambda: (t := logs()).count(b"rejected a malformed request") >= 3 and t,
                    10, "the three rejections in the logs")
    assert text.count(b"rejected a malformed request") == 3  # the rejections were logged...
    assert key not in text  # ...without the key


def test_a_header_with_non_utf8_bytes_gets_a_json_400_and_a_json_log_line(make_stack) -> None:
    stack = make_stack(workers=False)
    head = request_head("POST", "/v1/jobs", stack.api_key, Content_Length=5,
                        Connection="close")
    reply = raw_request(stack.port, head.replace(
        b"\r\n\r\n", b"\r\nContent-Type: multipart/\xff\r\n\r\n") + b"hello")
    error_of(reply, 400, "bad_request")
    log = stack.root / "logs" / "api.log"
    lines = wait_for(lambda: [line for line in log.read_bytes().splitlines()
                              if b'"status":400' in line] and log.read_bytes().splitlines(),
                     10, "the request's own line in api.log")
    for line in lines:
        orjson.loads(line)


# --- starting the api on its own ----------------------------------------------------------
def api_env(home: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "ALLOW_NO_AUTH")}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "TEXTRACTD_HOME": str(home), **values}


def log_events(output: bytes) -> list[dict]:
    events = [orjson.loads(line) for line in output.splitlines() if line.strip()]
    assert events, "the api wrote no log line"
    return events


@pytest.mark.parametrize("key", ["", " , ,"], ids=["empty", "only-commas"])
def test_the_api_refuses_to_start_without_a_key_with_exit_code_2(tmp_path, key: str) -> None:
    result = subprocess.run([sys.executable, "-m", "daemon.api"], cwd=ROOT, timeout=60,
                            env=api_env(tmp_path, API_KEY=key, PORT=str(free_port())),
                            capture_output=True)
    assert result.returncode == 2, result.stderr[-2000:]
    events = log_events(result.stdout)
    refused = [e for e in events if e["event"] == "api.refused"]
    assert len(refused) == 1 and refused[0]["level"] == "error"
    assert "ALLOW_NO_AUTH" in refused[0]["reason"]
    assert not [e for e in events if e["event"] == "api.starting"]


def test_the_api_refuses_a_malformed_key_list_with_exit_code_2_never_quoting_a_key(
        tmp_path) -> None:
    key = "tenant-key-that-must-not-be-printed"
    result = subprocess.run([sys.executable, "-m", "daemon.api"], cwd=ROOT, timeout=60,
                            env=api_env(tmp_path, API_KEY=f"acme:{key},globex:{key}",
                                        PORT=str(free_port())), capture_output=True)
    assert result.returncode == 2, result.stderr[-2000:]
    refused = [e for e in log_events(result.stdout) if e["event"] == "api.refused"]
    assert len(refused) == 1 and "entry 2" in refused[0]["reason"], refused
    assert key.encode() not in result.stdout + result.stderr


def test_allow_no_auth_serves_without_a_key_and_says_so_once(tmp_path) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "daemon.api"], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=api_env(tmp_path, API_KEY="", ALLOW_NO_AUTH="1", PORT=str(port),
                    REDIS_URL=redis_server.url))
    try:
        def formats_status() -> int:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/formats",
                                            timeout=2) as reply:
                    return reply.status
            except urllib.error.HTTPError as exc:
                return exc.code
            except OSError:
                return 0

        assert wait_for(formats_status, 30, "the api without a key") == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)
        redis_server.stop()
    events = log_events(output)
    warnings = [e for e in events if e["event"] == "api.auth_disabled"]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning"
    assert "ALLOW_NO_AUTH" in warnings[0]["reason"]
