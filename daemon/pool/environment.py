"""The environment a pool child and the tools it runs get: what they need, no secret.

The master is started with the service's whole environment (API_KEY, REDIS_URL with its
password, whatever the operator exports). A child has its Settings already (read by the
master before the fork), and textract's tools need only where to find programs, a locale
and a temporary folder, so everything else is withheld: a tool running a hostile
document (Ghostscript prints its environment on request) has no key to show.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from daemon.pool import faults

# What the tools need: programs, locale, a home for the few that want one (soffice),
# OCR data, and the thread limit tesseract reads. TMPDIR is set per job by the child.
KEPT = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "OMP_THREAD_LIMIT",
                  "TESSDATA_PREFIX", faults.ENV})


def minimal_environment(environ: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """The variables of `environ` a child and its tools may see: KEPT, LC_*, and the
    names an operator lists in TOOL_ENV."""
    allowed = KEPT | set(extra)
    return {name: value for name, value in environ.items()
            if name in allowed or name.startswith("LC_")}


def withhold_secrets(extra: Iterable[str] = ()) -> None:
    """Reduce this process's environment (and so every tool's) to `minimal_environment`."""
    kept = minimal_environment(os.environ, extra)
    os.environ.clear()
    os.environ.update(kept)
