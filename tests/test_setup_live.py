"""`scripts/run -d` on a fresh copy of the working tree: the first-run set-up, for real.

The copy gets its own .venv (pip install takes about 20 s here, well inside the budget), its
own .env and var/, a real supervisord with the real redis, api and workers, on a free port.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from packaging.utils import canonicalize_name

from devtools.stack import free_port
from tests.conftest import CORPUS
from tests.test_packaging import pins

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STATUS_LINE = re.compile(r"^(\S+)\s+(\S+)\s+pid (\d+),", re.M)
PDF = CORPUS / "py-pdf-sample-files" / "001-trivial" / "minimal-document.pdf"
# Settings a developer may have exported: the copy must run on its defaults.
OURS = {"ROLE", "REDIS_URL", "API_KEY", "ALLOW_NO_AUTH", "PORT", "HOST", "VIRTUAL_ENV"}


def copy_working_tree(dest: Path) -> None:
    """Tracked files plus untracked ones that are not ignored: what a commit would hold."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)  # keeps the executable bits


def gone(pid: int) -> bool:
    """Exited (a zombie nobody reaped yet counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def supervisord_pid(home: Path) -> int | None:
    try:
        pid = int((home / "var" / "supervisord.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return None if gone(pid) else pid


class Stack:
    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.port = port
        env = {k: v for k, v in os.environ.items() if k not in OURS and "TEXTRACTD" not in k}
        # One child keeps the pool light on a 2-core machine.
        self.env = {**env, "PORT": str(port), "WORKER_PROCESSES": "1"}

    def run(self, *args: str, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.home / "scripts" / "run"), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        # From the copy's root with its venv first on PATH, as the contract says.
        env = {**self.env, "PATH": f"{self.home / '.venv' / 'bin'}:{self.env['PATH']}"}
        return subprocess.run(
            ["supervisorctl", *args],
            cwd=self.home,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def wait_until_running(self, names: set[str], deadline_s: float = 30) -> dict[str, int]:
        """Poll `supervisorctl status` until `names` are RUNNING; their pids by name."""
        deadline = time.monotonic() + deadline_s
        while True:
            status = self.supervisorctl("status").stdout
            states = {name: (state, int(pid)) for name, state, pid in STATUS_LINE.findall(status)}
            if {n for n, (state, _) in states.items() if state == "RUNNING"} >= names:
                return {name: pid for name, (_, pid) in states.items()}
            assert time.monotonic() < deadline, f"not all of {sorted(names)} RUNNING:\n{status}"
            time.sleep(0.2)

    def statuses(self) -> dict[str, str]:
        """One `supervisorctl status`, as it is now: each program's state."""
        status = self.supervisorctl("status").stdout
        return dict(line.split()[:2] for line in status.splitlines() if line.strip())

    def try_the_printed_curl(self, output: str, env: dict[str, str], cwd: Path) -> str:
        """Paste the start message's curl line into a shell, as a user would; its status."""
        line = next(x for x in output.splitlines() if x.strip().startswith("try:"))
        command = line.split("try:", 1)[1].strip()
        assert command.startswith("curl ") and "file=@document.pdf" in command, command
        command = command.replace("curl ", "curl -s -o /dev/null -w '%{http_code}' ", 1)
        shutil.copy(PDF, cwd / "document.pdf")
        result = subprocess.run(["bash", "-c", command], cwd=cwd, env=env,
                                capture_output=True, text=True, timeout=120)
        return result.stdout

    def health(self) -> int:
        url = f"http://127.0.0.1:{self.port}/health"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status

    def shutdown_and_wait(self, deadline_s: float = 90) -> list[int]:
        """Stop supervisord; return the pids (its tree) that were still there at the end."""
        pid = supervisord_pid(self.home)
        if pid is None:
            return []
        tree = [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]
        self.supervisorctl("shutdown")
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline and not all(gone(p) for p in tree):
            time.sleep(0.1)
        return [p for p in tree if not gone(p)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("clone")
    copy_working_tree(home)
    stack = Stack(home, free_port())
    yield stack
    # A test that failed half-way must not leave its stack running.
    left = stack.shutdown_and_wait(deadline_s=60)
    for pid in left:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def test_scripts_run_d_sets_up_a_fresh_tree_serves_health_and_shuts_down_cleanly(
    stack: Stack,
) -> None:
    started = time.monotonic()
    first = stack.run("-d")
    first_s = time.monotonic() - started
    assert first.returncode == 0, first.stdout + first.stderr
    assert "creating .venv" in first.stderr
    assert "creating .env" in first.stderr
    assert f"http://127.0.0.1:{stack.port}" in first.stdout
    assert "supervisorctl shutdown" in first.stdout
    assert stack.health() == 200

    # Every package pip put into the fresh venv is at the version conf/constraints.txt pins.
    frozen = subprocess.run([str(stack.home / ".venv" / "bin" / "python"), "-m", "pip", "freeze"],
                            capture_output=True, text=True, timeout=60).stdout
    # (The project itself is listed as a comment: "# editable install ... (textractd==...)".)
    installed = {canonicalize_name(name): version for name, _, version in
                 (line.partition("==") for line in frozen.splitlines()
                  if not line.startswith(("#", "-e ")))
                 if version}
    assert {"aiohttp", "redis", "textract", "supervisor", "python-dotenv"} <= set(installed)
    assert installed.items() <= pins().items(), "a package is not at its pinned version"

    env_file = stack.home / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    key = re.search(r"^API_KEY=(\S{32,})$", env_file.read_text(), re.M)
    assert key and key.group(1) not in first.stdout + first.stderr

    # Returned only once supervisord calls every program RUNNING (/health answers earlier,
    # while the api is still STARTING): one look, no waiting.
    assert stack.statuses() == {"redis": "RUNNING", "api": "RUNNING", "workers": "RUNNING"}
    programs = stack.wait_until_running({"redis", "api", "workers"}, deadline_s=0)  # pids
    # The curl line of the start message works as printed, from any folder.
    elsewhere = stack.home.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    user_env = {k: v for k, v in stack.env.items() if k != "API_KEY"}
    assert stack.try_the_printed_curl(first.stdout, user_env, elsewhere) == "200"
    supervisord = supervisord_pid(stack.home)
    assert supervisord is not None

    again = stack.run("-d")
    assert again.returncode == 0, again.stderr
    assert f"already running here (pid {supervisord})" in again.stderr
    assert supervisord_pid(stack.home) == supervisord

    program_pids = list(programs.values())
    left = stack.shutdown_and_wait()
    assert left == [], f"still running after shutdown: {left}"
    assert all(gone(pid) for pid in [supervisord, *program_pids])

    # The second start finds everything in place: no apt, no pip, the same key.
    started = time.monotonic()
    second = stack.run("-d")
    second_s = time.monotonic() - started
    assert second.returncode == 0, second.stderr
    assert "already installed" in second.stderr
    assert "pip skipped" in second.stderr
    assert ".env already has an API_KEY" in second.stderr
    assert re.findall(r"^API_KEY=(\S+)$", env_file.read_text(), re.M) == [key.group(1)]
    assert stack.health() == 200
    assert stack.shutdown_and_wait() == []
    print(f"scripts/run -d: first run {first_s:.1f}s, second run {second_s:.1f}s", file=sys.stderr)


def test_scripts_run_d_refuses_a_port_that_is_taken_and_leaves_nothing_running(
    stack: Stack,
) -> None:
    assert stack.shutdown_and_wait() == [], "no stack of another test may hold the port"
    with socket.socket() as squatter:
        # REUSEADDR: a stopped api leaves TIME_WAIT connections on the port.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", stack.port))
        squatter.listen()
        result = stack.run("-d")
    assert result.returncode == 1
    assert f"already listens on http://127.0.0.1:{stack.port}" in result.stderr
    assert supervisord_pid(stack.home) is None


def test_a_key_from_the_environment_gets_a_curl_line_that_uses_it(stack: Stack) -> None:
    assert stack.shutdown_and_wait() == [], "no stack of another test may hold the port"
    keys = "from-the-environment-0123456789abcdef,an-older-key-0123456789abcdef"
    started = stack.run("-d", env={"API_KEY": keys})
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        assert "API_KEY of your environment" in started.stdout
        assert keys.split(",")[0] not in started.stdout, "the key is never printed"
        user_env = {**stack.env, "API_KEY": keys}
        assert stack.try_the_printed_curl(started.stdout, user_env, stack.home) == "200"
        # What the old message did, reading .env's key, is refused by this api.
        env_key = re.search(r"^API_KEY=(\S+)$", (stack.home / ".env").read_text(), re.M)
        assert env_key
        curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                f"X-API-Key: {env_key.group(1)}", f"http://127.0.0.1:{stack.port}/v1/formats"]
        assert subprocess.run(curl, capture_output=True, text=True).stdout == "403"
    finally:
        assert stack.shutdown_and_wait() == []
