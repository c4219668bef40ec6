"""The set-up scripts, the Dockerfile and the compose example.

scripts/lib.sh's functions run in a real bash; what must not really happen here (apt-get,
pip, supervisord) is a small executable earlier on PATH that records how it was called.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "scripts" / "lib.sh"
KEY_LINE = re.compile(r"^API_KEY=([A-Za-z0-9_-]{32,})$", re.M)
# Settings the scripts read: a developer's own values must not steer these tests.
OURS = {"ROLE", "REDIS_URL", "API_KEY", "ALLOW_NO_AUTH", "PORT", "HOST", "WORKER_PROCESSES"}


def clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in OURS}, **extra}


# --- helpers ------------------------------------------------------------------------------


def tool(name: str) -> str:
    """A linter from the test extras (next to this interpreter) or from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is missing: scripts/test installs it (test extras / apt list)"
    return found


def bash(
    script: str, *, cwd: Path = ROOT, env: dict[str, str] | None = None, path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `script` in bash after sourcing scripts/lib.sh, as the scripts do."""
    full_env = clean_env(**(env or {}))
    if path is not None:
        full_env["PATH"] = f"{path}:{full_env['PATH']}"
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {shlex.quote(str(LIB))}; {script}"],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def recorder(bin_dir: Path, name: str, log: Path | str, extra: str = "") -> None:
    """An executable `name` that appends its argv (one JSON list per line) to `log`.

    `log` may be a shell expression (a str), e.g. relative to the fake's own folder.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / name
    exe.write_text(
        "#!/usr/bin/env bash\n"
        f"python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' \"$@\" >> {log}\n"
        f"{extra}\n"
    )
    exe.chmod(0o755)


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def listed_packages(path: Path) -> list[str]:
    """Package names of a list file, parsed independently of lib.sh."""
    names: list[str] = []
    for line in path.read_text().splitlines():
        names += line.split("#", 1)[0].split()
    return names


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [
        line
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


# --- linters ----------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint_without_warnings() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def shell_scripts() -> list[str]:
    """Every shell script under scripts/ and .ci/ (by shebang or .sh suffix)."""
    found = []
    for path in sorted([*ROOT.joinpath("scripts").iterdir(), *ROOT.joinpath(".ci").iterdir()]):
        if not path.is_file():
            continue
        head = path.read_bytes()[:64]
        if path.suffix == ".sh" or re.match(rb"#!\S*(/|env )(ba)?sh\b", head):
            found.append(str(path.relative_to(ROOT)))
    return found


def test_every_shell_script_passes_shellcheck() -> None:
    scripts = shell_scripts()
    assert {"scripts/run", "scripts/test", "scripts/lib.sh", ".ci/run"} <= set(scripts)
    result = subprocess.run(
        [tool("shellcheck"), "-x", *scripts], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_commands_people_and_docker_run_are_executable() -> None:
    for name in ["scripts/run", "scripts/test", ".ci/run", "scripts/docker-entrypoint",
                 "scripts/lock"]:
        assert os.access(ROOT / name, os.X_OK), f"{name} lost its executable bit"


# --- Dockerfile -------------------------------------------------------------------------


def test_the_dockerfile_installs_exactly_the_packages_of_apt_packages_txt(tmp_path: Path) -> None:
    """Run the Dockerfile's own apt RUN line with apt-get and rm recorded, not executed."""
    instructions = dockerfile_instructions()
    copies = [args.split() for word, args in instructions if word == "COPY"]
    assert ["conf/apt-packages.txt", "/tmp/apt-packages.txt"] in copies
    apt_runs = [args for word, args in instructions if word == "RUN" and "apt-get" in args]
    assert len(apt_runs) == 1, "all system packages come from one RUN, from the list file"
    shell = [json.loads(args) for word, args in instructions if word == "SHELL"]
    assert shell and "pipefail" in shell[0], "a failing sed must fail the build"

    package_file = tmp_path / "apt-packages.txt"
    shutil.copy(ROOT / "conf" / "apt-packages.txt", package_file)
    command = apt_runs[0].replace("/tmp/apt-packages.txt", str(package_file))
    log = tmp_path / "calls.jsonl"
    recorder(tmp_path / "bin", "apt-get", log)
    recorder(tmp_path / "bin", "rm", log)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    result = subprocess.run(
        [*shell[0], command], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr

    recorded = calls(log)
    installs = [c for c in recorded if c and c[0] == "install"]
    assert len(installs) == 1
    flags = [a for a in installs[0][1:] if a.startswith("-")]
    names = [a for a in installs[0][1:] if not a.startswith("-")]
    assert "--no-install-recommends" in flags
    assert names == listed_packages(ROOT / "conf" / "apt-packages.txt")
    assert ["update"] in recorded
    assert any(
        c[:1] == ["-rf"] and any(a.startswith("/var/lib/apt/lists/") for a in c) for c in recorded
    ), "the apt lists are cleaned in the same layer"


def test_the_apt_list_has_the_service_tools_and_the_test_list_only_test_extras() -> None:
    runtime = listed_packages(ROOT / "conf" / "apt-packages.txt")
    test_only = listed_packages(ROOT / "conf" / "apt-packages-test.txt")
    assert set(runtime) >= {
        "poppler-utils",
        "tesseract-ocr",
        "tesseract-ocr-eng",
        "ghostscript",
        "unrtf",
        "antiword",
        "redis-server",
        "libreoffice-writer-nogui",
    }
    assert len(runtime) == len(set(runtime))
    assert {"shellcheck", "openssl"} <= set(test_only)
    assert not set(runtime) & set(test_only)


def test_the_dockerfile_runs_as_a_non_root_user_through_the_entrypoint() -> None:
    instructions = dict(dockerfile_instructions())  # last one of each kind wins, as in Docker
    assert instructions["FROM"].startswith("python:3.11-slim-bookworm")
    assert instructions["USER"].split(":")[0] not in {"root", "0"}
    assert json.loads(instructions["ENTRYPOINT"]) == ["/app/scripts/docker-entrypoint"]
    assert "/app/scripts/healthcheck.sh" in instructions["HEALTHCHECK"]
    assert json.loads(instructions["VOLUME"]) == ["/app/var", "/app/logs"]
    assert "5001" in instructions["EXPOSE"].split()


def test_the_docker_context_leaves_out_local_state_and_secrets() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "var", "logs", ".env", ".git"} <= ignored


# --- docker-entrypoint ----------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A copy of what the entrypoint needs, so its var/ and logs/ land in a temp dir."""
    app = tmp_path / "app"
    (app / "scripts").mkdir(parents=True)
    for name in ["scripts/docker-entrypoint", "scripts/lib.sh", "supervisord.conf"]:
        shutil.copy2(ROOT / name, app / name)
    log = tmp_path / "supervisord.calls"
    recorder(
        tmp_path / "bin",
        "supervisord",
        log,
        extra=f'echo "pid=$$ api=$TEXTRACTD_RUN_API workers=$TEXTRACTD_RUN_WORKERS '
        f'redis=$TEXTRACTD_EMBEDDED_REDIS" >> {tmp_path / "supervisord.env"}',
    )
    return app


def run_entrypoint(app: Path, env: dict[str, str]) -> tuple[int, str, int]:
    proc = subprocess.Popen(
        [str(app / "scripts" / "docker-entrypoint")],
        env=clean_env(PATH=f"{app.parent / 'bin'}:{os.environ['PATH']}", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = proc.communicate(timeout=60)
    return proc.returncode, output, proc.pid


def test_the_entrypoint_refuses_to_start_the_api_without_an_api_key(app: Path) -> None:
    code, output, _ = run_entrypoint(app, {"ROLE": "all"})
    assert code != 0
    assert "API_KEY is not set" in output
    assert "ALLOW_NO_AUTH=1" in output
    assert not (app.parent / "supervisord.calls").exists(), "supervisord must not start"


def test_the_entrypoint_becomes_supervisord_with_the_app_config_when_a_key_is_set(
    app: Path,
) -> None:
    code, output, pid = run_entrypoint(app, {"API_KEY": "k" * 40})
    assert code == 0, output
    assert calls(app.parent / "supervisord.calls") == [["-c", str(app / "supervisord.conf")]]
    # exec, not a child: in the container supervisord is PID 1 and gets docker's signals.
    env_line = (app.parent / "supervisord.env").read_text().split()
    assert env_line == [f"pid={pid}", "api=true", "workers=true", "redis=true"]
    assert stat.S_IMODE((app / "var").stat().st_mode) == 0o700
    assert (app / "logs").is_dir()


def test_a_worker_container_starts_without_an_api_key_and_without_embedded_redis(
    app: Path,
) -> None:
    code, output, _ = run_entrypoint(app, {"ROLE": "worker", "REDIS_URL": "redis://redis:6379/0"})
    assert code == 0, output
    env_line = (app.parent / "supervisord.env").read_text().split()
    assert env_line[1:] == ["api=false", "workers=true", "redis=false"]


def test_allow_no_auth_lets_the_api_start_without_a_key(app: Path) -> None:
    code, output, _ = run_entrypoint(app, {"ALLOW_NO_AUTH": "1"})
    assert code == 0, output
    assert calls(app.parent / "supervisord.calls") == [["-c", str(app / "supervisord.conf")]]


# --- lib.sh -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "redis_url", "expected"),
    [
        (None, "", ("true", "true", "true")),
        ("all", "", ("true", "true", "true")),
        ("all", "redis://db:6379/0", ("false", "true", "true")),
        ("api", "", ("true", "true", "false")),
        ("api", "redis://db:6379/0", ("false", "true", "false")),
        ("worker", "", ("true", "false", "true")),
        ("worker", "redis://db:6379/0", ("false", "false", "true")),
    ],
)
def test_supervisor_switches_follow_role_and_redis_url(
    role: str | None, redis_url: str, expected: tuple[str, str, str]
) -> None:
    env = {"REDIS_URL": redis_url} if role is None else {"ROLE": role, "REDIS_URL": redis_url}
    result = bash(
        "export_supervisor_switches; "
        'echo "$TEXTRACTD_EMBEDDED_REDIS $TEXTRACTD_RUN_API $TEXTRACTD_RUN_WORKERS"',
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert tuple(result.stdout.split()) == expected
    # Only a split role on the embedded redis is worth a warning: no other host reaches it.
    warned = "unix socket" in result.stderr
    assert warned == (role in {"api", "worker"} and not redis_url)


def test_an_unknown_role_is_an_error_that_names_the_choices() -> None:
    result = bash("export_supervisor_switches; echo started", env={"ROLE": "both"})
    assert result.returncode != 0
    assert "ROLE=both" in result.stderr and "all, api or worker" in result.stderr
    assert "started" not in result.stdout


def test_ensure_env_file_creates_a_private_random_key_and_keeps_it(tmp_path: Path) -> None:
    first = bash("ensure_env_file .env", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    key = KEY_LINE.search(env_file.read_text())
    assert key, env_file.read_text()
    assert key.group(1) not in first.stdout + first.stderr, "the key is never printed"

    second = bash("ensure_env_file .env", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert KEY_LINE.findall(env_file.read_text()) == [key.group(1)]

    other = tmp_path / "other"
    other.mkdir()
    bash("ensure_env_file .env", cwd=other)
    assert KEY_LINE.findall((other / ".env").read_text()) != [key.group(1)]


def test_ensure_env_file_adds_a_key_to_an_env_without_one_and_makes_it_private(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=5002\nWORKER_PROCESSES=2")  # no newline at the end
    env_file.chmod(0o644)
    result = bash("ensure_env_file .env", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = env_file.read_text().splitlines()
    assert lines[:2] == ["PORT=5002", "WORKER_PROCESSES=2"]
    assert len(lines) == 3 and KEY_LINE.match(lines[2])
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_load_env_exports_the_file_but_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# a comment\n"
        "API_KEY=from-file\n"
        "export PORT=5099\n"
        'REDIS_URL="redis://db:6379/1"\n'
        "  WORKER_PROCESSES = '3'  \n"
        "not a pair\n"
    )
    result = bash(
        'load_env .env; printf "%s|" "$API_KEY" "$PORT" "$REDIS_URL" "$WORKER_PROCESSES"; echo; '
        "python3 -c 'import os; print(os.environ[\"PORT\"])'",
        cwd=tmp_path,
        env={"API_KEY": "from-env"},
    )
    assert result.returncode == 0, result.stderr
    shown, exported = result.stdout.strip().split("\n")
    assert shown == "from-env|5099|redis://db:6379/1|3|"
    assert exported == "5099"


def test_prepare_dirs_makes_var_and_spool_private(tmp_path: Path) -> None:
    result = bash("umask 022; prepare_dirs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ["var", "var/spool"]:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o700
    assert (tmp_path / "logs").is_dir()


def test_system_packages_already_installed_need_no_apt_get(tmp_path: Path) -> None:
    log = tmp_path / "apt.calls"
    recorder(tmp_path / "bin", "apt-get", log)
    result = bash("ensure_system_packages conf/apt-packages.txt", path=tmp_path / "bin")
    assert result.returncode == 0, result.stderr
    count = len(listed_packages(ROOT / "conf" / "apt-packages.txt"))
    assert f"all {count} already installed" in result.stderr
    assert calls(log) == []


@pytest.fixture
def fake_dpkg(tmp_path: Path) -> Path:
    """dpkg-query and apt-get that share a list of installed packages in a file."""
    (tmp_path / "installed").write_text("alpha\ngamma\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Paths relative to the fakes' own folder: the non-root test runs a copy of all this.
    here = '"$(dirname "$0")"/..'
    (bin_dir / "dpkg-query").write_text(
        "#!/usr/bin/env bash\n"
        f'if grep -qx -- "${{@: -1}}" {here}/installed; then printf "install ok installed"; '
        "else exit 1; fi\n"
    )
    (bin_dir / "dpkg-query").chmod(0o755)
    recorder(
        bin_dir,
        "apt-get",
        f"{here}/apt.calls",
        extra=f'[[ $1 == install ]] && printf "%s\\n" "${{@:5}}" >> {here}/installed; true',
    )
    (tmp_path / "list.txt").write_text("alpha  # here\nbeta\n\n# comment\ngamma delta\n")
    return tmp_path


@pytest.mark.skipif(os.geteuid() != 0, reason="installing is root's path; others get advice")
def test_root_installs_only_the_missing_packages_after_one_update(fake_dpkg: Path) -> None:
    result = bash(
        f"ensure_system_packages {fake_dpkg / 'list.txt'}", cwd=fake_dpkg, path=fake_dpkg / "bin"
    )
    assert result.returncode == 0, result.stderr
    assert calls(fake_dpkg / "apt.calls") == [
        ["update", "-q"],
        ["install", "-y", "-q", "--no-install-recommends", "beta", "delta"],
    ]
    assert "installed 2 (beta delta)" in result.stderr

    again = bash(
        f"ensure_system_packages {fake_dpkg / 'list.txt'}", cwd=fake_dpkg, path=fake_dpkg / "bin"
    )
    assert "all 4 already installed" in again.stderr
    assert len(calls(fake_dpkg / "apt.calls")) == 2, "a second run calls apt-get no more"


def test_a_user_who_is_not_root_is_told_what_to_install_and_set_up_goes_on(
    fake_dpkg: Path,
) -> None:
    # A world-readable copy, so an unprivileged user can use it.
    shared = Path(tempfile.mkdtemp(prefix="textractd-nonroot-"))
    try:
        shutil.copytree(fake_dpkg, shared / "t")
        shutil.copy(LIB, shared / "lib.sh")
        for path in [shared, *shared.rglob("*")]:
            path.chmod(0o777 if path.is_dir() or os.access(path, os.X_OK) else 0o666)
        script = (
            f"set -euo pipefail; source {shared / 'lib.sh'}; "
            f"ensure_system_packages {shared / 't' / 'list.txt'}; echo carried-on"
        )
        drop = (
            []
            if os.geteuid() != 0
            else ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        )
        env = clean_env(PATH=f"{shared / 't' / 'bin'}:{os.environ['PATH']}")
        result = subprocess.run(
            [*drop, "bash", "-c", script],
            cwd=shared,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "carried-on" in result.stdout
        assert "missing: beta delta" in result.stderr
        assert "apt-get install --no-install-recommends beta delta" in result.stderr
        assert calls(shared / "t" / "apt.calls") == []
    finally:
        shutil.rmtree(shared)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project dir whose .venv/bin/python records pip calls instead of running pip."""
    for name in ["setup.cfg", "pyproject.toml", "conf/constraints.txt"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(
        "#!/usr/bin/env bash\n"
        f'if [[ "$1 $2" == "-m pip" ]]; then echo "$*" >> {tmp_path / "pip.calls"}; exit 0; fi\n'
        f'exec {shlex.quote(sys.executable)} "$@"\n'
    )
    python.chmod(0o755)
    return tmp_path


def pip_calls(project: Path) -> list[str]:
    log = project / "pip.calls"
    return log.read_text().splitlines() if log.exists() else []


PIP = "-m pip install --disable-pip-version-check -q -c conf/constraints.txt -e"


def test_ensure_venv_runs_pip_once_and_skips_it_while_nothing_changed(project: Path) -> None:
    first = bash("ensure_venv test", cwd=project)
    assert first.returncode == 0, first.stderr
    assert pip_calls(project) == [f"{PIP} .[test]"]

    for extras in ["test", ""]:  # plain `.` is part of `.[test]`: scripts/run after tests
        again = bash(f"ensure_venv {extras}", cwd=project)
        assert again.returncode == 0, again.stderr
        assert "pip skipped" in again.stderr
    assert len(pip_calls(project)) == 1

    with (project / "setup.cfg").open("a") as f:
        f.write("\n# a changed dependency list\n")
    bash("ensure_venv", cwd=project)
    assert pip_calls(project)[1:] == [f"{PIP} ."]
    bash("ensure_venv test", cwd=project)
    assert pip_calls(project)[2:] == [f"{PIP} .[test]"]

    # New pins (scripts/lock) are installed too, not skipped as "already there".
    with (project / "conf" / "constraints.txt").open("a") as f:
        f.write("\n# a new lock\n")
    bash("ensure_venv test", cwd=project)
    assert pip_calls(project)[3:] == [f"{PIP} .[test]"]


# --- pinned versions ----------------------------------------------------------------------


def pins(path: Path = ROOT / "conf" / "constraints.txt") -> dict[str, str]:
    """A constraints file as {normalised name: version}; every line must be an exact pin."""
    found = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            found[canonicalize_name(name)] = version.strip()
    return found


def pin_problems(pinned: dict[str, str]) -> list[str]:
    """Each requirement of setup.cfg (runtime, test, bench) `pinned` lacks or contradicts."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    declared = [line for text in (cfg["options"]["install_requires"],
                                  cfg["options.extras_require"]["test"],
                                  cfg["options.extras_require"]["bench"])
                for line in text.splitlines() if line.strip()]
    assert len(declared) >= 10
    problems = []
    for line in declared:
        requirement = Requirement(line)
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{line} (pinned: {version})")
    return problems


def test_every_declared_dependency_is_pinned_to_a_version_it_accepts() -> None:
    assert pin_problems(pins()) == [], "run scripts/lock"


def test_the_image_installs_the_pinned_versions_the_scripts_install() -> None:
    runs = [args for word, args in dockerfile_instructions() if word == "RUN" and "pip " in args]
    assert len(runs) == 1
    assert re.search(r"pip install .*-c conf/constraints\.txt \.(\s|$)", runs[0]), runs[0]
    assert ("COPY", ". /app") in dockerfile_instructions(), "the constraints reach the image"


def test_scripts_run_will_not_start_a_second_supervisord(tmp_path: Path) -> None:
    """A live supervisord in var/supervisord.pid: -d says so and succeeds, foreground fails."""
    for name in ["scripts/run", "scripts/lib.sh"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    # A real process whose command line names supervisord, as the real one's does.
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "supervisord"])
    try:
        (tmp_path / "var").mkdir()
        (tmp_path / "var" / "supervisord.pid").write_text(f"{running.pid}\n")
        for args, code in [(["-d"], 0), ([], 1)]:
            result = subprocess.run(
                [str(tmp_path / "scripts" / "run"), *args],
                env=clean_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == code, result.stderr
            assert f"already running here (pid {running.pid})" in result.stderr
        assert not (tmp_path / ".venv").exists(), "it stopped before any set-up"
    finally:
        running.kill()
        running.wait()


# --- compose ------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((ROOT / "conf" / "docker-compose.yml").read_text())


def test_every_compose_service_has_limits_a_healthcheck_and_restart_policies() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "api", "workers"}
    for name, service in services.items():
        resources = service["deploy"]["resources"]
        assert resources["limits"] == {"memory": "1G", "cpus": "1.0"}, name
        assert resources["reservations"] == {"memory": "512M", "cpus": "0.5"}, name
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert len(service["healthcheck"]["test"]) > 1, name
        assert service["restart"] == "unless-stopped", name
        assert service["deploy"]["restart_policy"]["condition"] == "on-failure", name


def test_compose_splits_api_and_workers_over_one_persistent_redis() -> None:
    config = compose()
    services = config["services"]
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert "--maxmemory-policy noeviction" in redis_command
    assert "ports" not in services["redis"], "redis stays on the compose network"
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert set(config["volumes"]) == {"redis-data"}

    api, workers = services["api"], services["workers"]
    assert api["environment"]["ROLE"] == "api"
    assert workers["environment"]["ROLE"] == "worker"
    for service in (api, workers):
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        context = (ROOT / "conf" / service["build"]["context"]).resolve()
        assert (context / service["build"]["dockerfile"]).is_file()
    assert api["image"] == workers["image"]
    assert any(p.endswith(":5001") for p in api["ports"])
    assert "/health" in " ".join(api["healthcheck"]["test"])
    assert workers["deploy"]["replicas"] >= 1
    assert "ports" not in workers
