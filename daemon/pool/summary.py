"""A job's one summary line: the same fields whichever way the job's turn ended.

`job.done`, `job.failed`, `job.retry`, `job.deferred`, `job.duplicate`: one event per
delivery a child settled, with one set of fields, so a program reading the logs needs no
case per event. Written by the child, through its slot's relay pipe (pool/relay.py); by
the master when the child died after storing the result and before its line was out
(then with `logged_by: master`). A page task of a scan
(pool/scans.py) logs `page.done`, `page.retry`, `page.failed` or `page.duplicate` with the
same fields, plus `page` and `pages`.
"""

from __future__ import annotations

from typing import NamedTuple

import structlog

from daemon.pool.relay import RelaySink
from daemon.store import JobState

log = structlog.get_logger()
# In a pool child: the lines go to the master through the slot's pipe.
_sink: RelaySink | None = None


class JobSummary(NamedTuple):
    state: str  # the job's state after this delivery: done | failed | queued
    format: str | None  # None when the job never ran (its breaker, its attempts)
    bytes: int | None
    attempt: int
    duration_ms: float | None
    chars: int | None = None
    error_code: str | None = None
    rss_mb: float | None = None  # the child with its tools, once the result was out
    sha256: str | None = None  # the document's: which bytes, never what they say


# Events a reader should look at: a retry is a failure that did not end the job.
_WARNINGS = frozenset({"job.retry", "page.retry"})


def finished_event(state: str) -> str:
    """The summary event of a job this delivery finished."""
    return "job.done" if state == JobState.DONE else "job.failed"


def relay_summaries(sink: RelaySink) -> None:
    """Called once in a child: its summary lines go to `sink` from now on."""
    global _sink
    _sink = sink


def log_summary(event: str, summary: JobSummary, *, number: int = 0,
                **extra: object) -> None:
    """The summary line of one delivery; `extra` adds what only that event has.
    `number` is the slot's summary number (SlotState.remember) of a finished job's
    line: the master reads it to know the line is out."""
    logger = log
    if _sink is not None:
        _sink.number = number
        logger = _sink.logger
    logger.log(30 if event in _WARNINGS else 20, event, **summary._asdict(), **extra)
