"""Faults a test injects into a real pool child: TEXTRACTD_TEST_FAULT in its environment.

Never set in a deployment. Each names a moment no test can reach from outside the
process (a signal stops every thread, not just the loop; a kill cannot be aimed between
two statements):
  wedge-idle:<path>   once <path> exists, the loop blocks for good between jobs, while
                      the watch thread runs on
  kill-after-store    the child SIGKILLs itself right after FINISH stored a result
  kill-after-log      the child SIGKILLs itself right after writing a finished job's
                      summary line, before its slot says so
  crash:<path>        once <path> exists, the next turn of a child's loop (or of the
                      master's, with crash-master:<path>) raises an exception nobody
                      expects; <path> is removed first, so it happens once
"""

from __future__ import annotations

import os
import signal
import time

import structlog

ENV = "TEXTRACTD_TEST_FAULT"

log = structlog.get_logger()


# Read once: a process's fault is set where it starts, and the loop asks after every job.
_ASKED, _, _ARGUMENT = os.environ.get(ENV, "").partition(":")


def _asked(name: str) -> str | None:
    """The fault's argument ("" if none) when the environment asks for `name`."""
    return _ARGUMENT if name == _ASKED else None


def wedge_if_asked() -> None:
    path = _asked("wedge-idle")
    if path and os.path.exists(path):
        log.warning("fault.wedge", fault=ENV)
        while True:
            time.sleep(3600)


def die_if_asked_after_store() -> None:
    if _asked("kill-after-store") is not None:
        os.kill(os.getpid(), signal.SIGKILL)


def die_if_asked_after_log() -> None:
    if _asked("kill-after-log") is not None:
        os.kill(os.getpid(), signal.SIGKILL)


def crash_if_asked(who: str = "crash") -> None:
    """`who`: "crash" in a child's loop, "crash-master" in the master's."""
    path = _asked(who)
    if path and os.path.exists(path):
        os.unlink(path)
        raise RuntimeError(f"{ENV} asked for this crash")
