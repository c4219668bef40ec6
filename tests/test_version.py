"""One version, everywhere: the package, the changelog, the CLI and the running service."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from daemon import __version__
from tests.client import Client

ROOT = Path(__file__).resolve().parents[1]
RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", re.M)
# Keep a Changelog's kinds of change, the only subheadings a release may have.
KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def health_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon.health", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_version_is_the_changelogs_newest_release_and_the_packages() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    releases = RELEASE.findall(changelog)
    assert releases, "no release heading like '## [0.2.0] - 2026-12-01'"
    assert releases[0][0] == __version__
    assert changelog.index("## [Unreleased]") < changelog.index(f"## [{__version__}]")
    versions = [tuple(map(int, v.split("."))) for v, _date in releases]
    assert versions == sorted(versions, reverse=True), "newest release first"
    assert set(re.findall(r"^### (.+)$", changelog, re.M)) <= KINDS
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["version"] == "attr: daemon.__version__"


def test_the_health_cli_reports_the_version_on_request_and_in_its_json(
    redis_server, tmp_path: Path,
) -> None:
    env = {**os.environ, "REDIS_URL": redis_server.url, "TEXTRACTD_HOME": str(tmp_path)}
    asked = health_cli("--version", env=env)
    assert (asked.returncode, asked.stdout) == (0, f"textractd {__version__}\n")
    as_json = json.loads(health_cli("redis", "--json", env=env).stdout)
    assert as_json["version"] == __version__
    assert as_json["checks"]["redis"]["status"] == "ok"


def test_a_running_stack_reports_the_same_version_on_every_route(make_stack) -> None:
    stack = make_stack(env={"WORKER_PROCESSES": "1"})
    client = Client(stack)
    for path in ("/health", "/health/detailed", "/status"):
        assert client.request("GET", path).json()["version"] == __version__, path
    metrics = client.request("GET", "/metrics", headers={"Accept": "text/plain"}).text
    assert f'textractd_build_info{{version="{__version__}"}} 1.0' in metrics
