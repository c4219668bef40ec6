"""Check a running textractd from outside, as the seed's test_enhanced_service.py did.

    python -m daemon.health.smoke --url http://127.0.0.1:5001 --api-key KEY [--test NAME|all]

One line per check (`PASS health 2.1 ms` / `FAIL convert: ...`); exit 0 when every
check passed, 1 when one failed, 2 on bad arguments. Standard library only, so it runs
from any machine with Python.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable

EXIT_FAILED = 1


class CheckFailed(Exception):
    """Raised by a check with the reason it failed."""


class Service:
    def __init__(self, url: str, api_key: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(
            self.url + path, data=body, method=method,
            headers={"X-API-Key": self.api_key, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return reply.status, dict(reply.headers), reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise CheckFailed(f"cannot reach {self.url}: {exc}") from exc

    def json(self, method: str, path: str) -> tuple[int, dict]:
        status, _headers, body = self.call(method, path)
        try:
            return status, json.loads(body)
        except ValueError as exc:
            raise CheckFailed(f"{path} answered {status} with a body that is not JSON") from exc


def check_health(service: Service) -> str:
    status, body = service.json("GET", "/health")
    if status != 200 or body.get("status") != "pass":
        raise CheckFailed(f"/health answered {status} {body}")
    return f"version {body.get('version')}"


def check_detailed(service: Service) -> str:
    status, body = service.json("GET", "/health/detailed")
    failing = [name for name, checks in body.get("checks", {}).items()
               if any(c.get("status") == "fail" for c in checks)]
    if status != 200 or body.get("status") not in ("pass", "warn"):
        raise CheckFailed(f"/health/detailed answered {status}; failing: {failing}")
    return f"{body['status']} ({len(body.get('checks', {}))} components)"


def check_metrics(service: Service) -> str:
    status, body = service.json("GET", "/metrics")
    if status != 200 or "requests" not in json.dumps(body):
        raise CheckFailed(f"/metrics answered {status} without request counters")
    status, _headers, text = service.call("GET", "/metrics?format=prometheus")
    if status != 200 or b"# TYPE " not in text:
        raise CheckFailed(f"/metrics?format=prometheus answered {status} without exposition")
    families = text.count(b"# TYPE ")
    return f"json + prometheus ({families} families)"


def check_convert(service: Service) -> str:
    marker = f"textractd smoke test {uuid.uuid4().hex}"
    status, headers, body = service.call(
        "POST", "/v1/extract?filename=smoke.txt&wait=60", body=marker.encode(),
        headers={"Content-Type": "application/octet-stream"})
    if status != 200:
        raise CheckFailed(f"/v1/extract answered {status}: {body[:200]!r}")
    if body.decode("utf-8", "replace").strip() != marker:
        raise CheckFailed("the text that came back is not the text sent")
    return f"job {headers.get('X-Job-ID', '?')}"


def check_circuit_breaker(service: Service) -> str:
    status, body = service.json("GET", "/status")
    if status != 200:
        raise CheckFailed(f"/status answered {status}")
    breakers = body.get("breakers", {})
    opened = sorted(family for family, state in breakers.items() if state == "open")
    if opened:
        raise CheckFailed(f"open breakers: {', '.join(opened)}")
    return ", ".join(f"{family} {state}" for family, state in sorted(breakers.items()))


CHECKS: dict[str, Callable[[Service], str]] = {
    "health": check_health,
    "detailed": check_detailed,
    "metrics": check_metrics,
    "convert": check_convert,
    "circuit-breaker": check_circuit_breaker,
}


def run(service: Service, names: list[str]) -> int:
    failed = 0
    for name in names:
        started = time.perf_counter()
        try:
            detail = CHECKS[name](service)
        except CheckFailed as exc:
            failed += 1
            print(f"FAIL {name}: {exc}")
            continue
        print(f"PASS {name} {(time.perf_counter() - started) * 1000:.1f} ms: {detail}")
    return EXIT_FAILED if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daemon.health.smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:5001")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--test", default="all", choices=[*CHECKS, "all"])
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args(argv)
    names = list(CHECKS) if args.test == "all" else [args.test]
    return run(Service(args.url, args.api_key, args.timeout), names)


if __name__ == "__main__":
    sys.exit(main())
