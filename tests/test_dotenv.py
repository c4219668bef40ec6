"""`.env` is read one way, python-dotenv's, by the service and by the scripts alike.

The same file goes to `Settings.from_env` (what the api and the pool run) and to a real
bash that sources scripts/lib.sh and calls `load_env` (what scripts/run exports before
supervisord starts): the two must agree value for value.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from daemon.config import Settings

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "scripts" / "lib.sh"

# Every case the issue names: an inline comment after a blank, `export `, single and
# double quotes with a `#` inside them kept, a blank value, spaces around `=`.
FIXTURE = """\
# textractd settings
RATE_LIMIT_PER_MINUTE=60 # per key
export PORT=5099
API_KEY="first#key,second-key"   # two keys, the first with a hash
REDIS_URL='redis://db:6379/1#not-a-comment'
ROLE=
  WORKER_PROCESSES = '3'
HOST="0.0.0.0"
CONSUMER_PREFIX=box#7
LOG_LEVEL=debug
"""
EXPECTED = {
    "RATE_LIMIT_PER_MINUTE": "60",
    "PORT": "5099",
    "API_KEY": "first#key,second-key",
    "REDIS_URL": "redis://db:6379/1#not-a-comment",
    "ROLE": "",
    "WORKER_PROCESSES": "3",
    "HOST": "0.0.0.0",
    "CONSUMER_PREFIX": "box#7",
    "LOG_LEVEL": "debug",
}


def loaded_by_bash(home: Path, env: dict[str, str]) -> dict[str, str]:
    """What `load_env` exports from home/.env, as the child processes see it."""
    base = {k: v for k, v in os.environ.items() if k not in EXPECTED}
    result = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {shlex.quote(str(LIB))}; load_env .env; "
         "python3 -c 'import json, os; print(json.dumps(dict(os.environ)))'"],
        cwd=home, env={**base, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    exported = json.loads(result.stdout)
    return {key: exported[key] for key in EXPECTED if key in exported}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / ".env").write_text(FIXTURE)
    return tmp_path


def test_the_service_reads_an_inline_comment_quotes_and_export_as_dotenv_does(
    home: Path,
) -> None:
    settings = Settings.from_env({"TEXTRACTD_HOME": str(home)})
    assert settings.rate_limit_per_minute == 60
    assert settings.port == 5099
    assert settings.api_keys == ("first#key", "second-key")
    assert settings.redis_url == "redis://db:6379/1#not-a-comment"
    assert settings.role == "all", "blank means the default"
    assert settings.consumer_prefix == "box#7", "a # with no blank before it is no comment"
    assert settings.worker_processes == 3
    assert settings.host == "0.0.0.0"


def test_scripts_load_env_exports_the_same_values_the_service_reads(home: Path) -> None:
    assert loaded_by_bash(home, {}) == EXPECTED
    # The values the service turned into settings came from these very strings.
    from_bash = Settings.from_env({**loaded_by_bash(home, {}), "TEXTRACTD_HOME": "/nonexistent"})
    from_file = Settings.from_env({"TEXTRACTD_HOME": str(home)})
    assert {**vars(from_bash), "home": None} == {**vars(from_file), "home": None}


def test_the_environment_wins_over_the_file_in_both(home: Path) -> None:
    env = {"RATE_LIMIT_PER_MINUTE": "7", "API_KEY": "from-env"}
    assert loaded_by_bash(home, env) == {**EXPECTED, **env}
    settings = Settings.from_env({"TEXTRACTD_HOME": str(home), **env})
    assert settings.rate_limit_per_minute == 7
    assert settings.api_keys == ("from-env",)


def test_a_value_that_is_no_number_after_its_comment_still_names_the_setting(
    tmp_path: Path,
) -> None:
    # The comment is gone, what is left is still checked: the error says which setting.
    (tmp_path / ".env").write_text("RATE_LIMIT_PER_MINUTE=sixty # per key\n")
    with pytest.raises(ValueError, match="RATE_LIMIT_PER_MINUTE='sixty'"):
        Settings.from_env({"TEXTRACTD_HOME": str(tmp_path)})
