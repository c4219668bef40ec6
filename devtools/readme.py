"""Keep README.md's reference tables true: they are made from the code's own lists.

`python -m devtools.readme` rewrites the tables between their markers; a test fails when
README.md and the code disagree.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from functools import partial

from daemon.config import ROOT, documented_settings
from daemon.errors import ERROR_CODES

README = ROOT / "README.md"


def _default_text(value: object) -> str:
    if isinstance(value, tuple):
        value = ",".join(value)
    if value == "":
        return "(empty)"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def settings_table() -> str:
    rows = [f"| `{name}` | {_default_text(default)} | {meaning} |"
            for name, default, meaning in documented_settings()]
    return "\n".join(["| variable | default | meaning |", "| --- | --- | --- |", *rows])


def error_table() -> str:
    rows = [f"| `{e.code}` | {e.status if e.status != 200 else 'job'} | {e.meaning} | "
            f"{e.action} |" for e in ERROR_CODES.values()]
    return "\n".join(["| code | status | meaning | what the client should do |",
                      "| --- | --- | --- | --- |", *rows])


TABLES = {"settings": settings_table, "error-codes": error_table}


def _fill(make: Callable[[], str], match: re.Match[str]) -> str:
    return f"{match[1]}{make()}\n{match[2]}"


def render(text: str) -> str:
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        text = pattern.sub(partial(_fill, make), text)
    return text


def main() -> int:
    current = README.read_text()
    wanted = render(current)
    if "--check" in sys.argv:
        return 0 if current == wanted else 1
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
