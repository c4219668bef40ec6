"""The README stays true: its reference tables come from the code, its first screen works."""

from __future__ import annotations

import subprocess
import sys

from daemon.config import ROOT, documented_settings
from daemon.errors import ERROR_CODES

README = (ROOT / "README.md").read_text()


def test_the_readme_tables_match_the_code() -> None:
    check = subprocess.run([sys.executable, "-m", "devtools.readme", "--check"], cwd=ROOT)
    assert check.returncode == 0, "run `python -m devtools.readme` to refresh README.md"


def test_every_setting_and_error_code_is_documented() -> None:
    for name, _default, _meaning in documented_settings():
        assert f"`{name}`" in README, name
    for code in ERROR_CODES:
        assert f"`{code}`" in README, code


def test_the_first_screen_shows_how_to_run_and_test() -> None:
    first_screen = "\n".join(README.splitlines()[:25])
    assert "scripts/run" in first_screen and "scripts/test" in first_screen
    assert "curl" in first_screen
