"""`textractd bench`: the benchmark, `python -m bench`, where a source checkout has it.

bench/ is benchmark tooling, not part of the installed package: from a checkout (or an
editable install) this forwards to it; elsewhere it says where to find it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from daemon.cli.registry import Command

EXIT_UNAVAILABLE = 2
ABSENT = ("textractd bench: the benchmark is not installed with the package; it lives in "
          "bench/ of a source checkout (run scripts/bench there).")


def forward(args: Sequence[str]) -> int:
    from daemon.config import ROOT

    if not (ROOT / "bench" / "__main__.py").is_file():
        wants_help = bool({"-h", "--help"} & set(args))
        print(f"usage: textractd bench [ARGS...]\n\n{ABSENT}",
              file=sys.stdout if wants_help else sys.stderr)
        return 0 if wants_help else EXIT_UNAVAILABLE
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT).returncode


COMMAND = Command("bench", "the service against textract itself (python -m bench; source "
                           "checkouts only: bench/ is not installed)",
                  forward=forward, order=90)
