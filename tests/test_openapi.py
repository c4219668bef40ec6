"""The contract holds: /openapi.json names every route the app has (and no other), its
error codes are the code's own list, and Schemathesis, run against a live stack with the
key over every operation (its default checks and stateful links), finds nothing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from daemon.api.app import create_app
from daemon.api.openapi import OPERATIONS, document
from daemon.config import Settings
from daemon.errors import ERROR_CODES
from devtools.stack import Stack
from tests.fakes import PDF, FakeTools, submit, wait_final

CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"


def app_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(api_keys=("k",)))
    # aiohttp answers HEAD wherever it answers GET: HTTP's rule, not a route of ours.
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}


def test_every_route_of_the_app_is_in_the_document_and_no_other() -> None:
    routes = app_routes()
    documented = set(OPERATIONS)
    assert routes - documented == set(), "routes missing from daemon/api/openapi.py"
    assert documented - routes == set(), "documented operations the app does not have"
    paths = document()["paths"]
    for method, path in routes:
        operation = paths[path][method.lower()]
        in_path = set(re.findall(r"{(\w+)}", path))
        assert in_path == {p["name"] for p in operation.get("parameters", [])
                           if p["in"] == "path"}, (method, path)


def test_the_error_codes_are_an_enum_of_the_codes_the_service_has() -> None:
    schemas = document()["components"]["schemas"]
    assert schemas["ErrorCode"]["enum"] == sorted(ERROR_CODES)
    error = schemas["Error"]["properties"]["error"]
    assert error["required"] == ["code", "message", "request_id"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[Stack, FakeTools]]:
    tools = FakeTools(tmp_path_factory.mktemp("fake-tools"))
    stack = Stack(env=tools.env(WORKER_PROCESSES=2, MAX_ATTEMPTS=1, MAX_WAIT=2,
                                EXTRACT_WAIT=2, TIKA_WAIT=3,
                                CIRCUIT_BREAKER_FAILURE_THRESHOLD=1000))
    stack.start()
    yield stack, tools
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


def get(url: str) -> tuple[int, dict, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, dict(resp.headers), resp.read()


def test_the_document_and_the_reference_page_need_no_key_and_no_cdn(stack) -> None:
    stack, _tools = stack
    status, headers, body = get(f"{stack.url}/openapi.json")
    assert status == 200 and orjson.loads(body)["openapi"] == "3.1.0"
    status, headers, page = get(f"{stack.url}/docs")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    scripts = re.findall(rb'<script src="([^"]+)"', page)
    assert scripts and all(s.startswith(b"/ui/static/") for s in scripts)
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for script in scripts:
        assert get(f"{stack.url}{script.decode()}")[0] == 200


def test_schemathesis_finds_no_failure_in_any_operation(stack, tmp_path) -> None:
    stack, tools = stack
    # A real dead letter, so the dead-letter operations have data to reach (their links).
    tools.mode("pdftotext", "signal-parent:KILL")
    dead = wait_final(stack, submit(stack, PDF), 30)
    assert dead["state"] == "failed"
    tools.mode("pdftotext", "pass")
    junit = tmp_path / "schemathesis.xml"
    started = time.monotonic()
    run = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(CONFIG),
         "run", f"{stack.url}/openapi.json", "--header", f"X-API-Key: {stack.api_key}",
         "--seed", "17", "--report", "junit", "--report-junit-path", str(junit),
         "--request-timeout", "10", "--no-color"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path)
    took = time.monotonic() - started
    summary = run.stdout[run.stdout.rfind("SUMMARY"):]
    assert run.returncode == 0, run.stdout[-6000:]
    tested = {c.get("name") for c in ET.parse(junit).getroot().iter("testcase")}
    # Schemathesis reads the document from /openapi.json and leaves that URL out.
    assert {f"{m} {p}" for m, p in OPERATIONS} - tested == {"GET /openapi.json"}
    assert "Stateful tests" in tested
    generated = re.search(r"(\d+) generated", summary)
    print(f"\nschemathesis: {len(tested) - 1} operations, "
          f"{generated.group(1) if generated else '?'} test cases, 0 failures, {took:.1f} s")
