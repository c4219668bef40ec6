"""The circuit breaker's rule: what counts against an extractor, its states, their log line.

One breaker per extractor family (pdf, docx, ...). Its arithmetic runs inside the job
scripts (`lua.BREAKER_LUA`), so it moves in the same atomic step as the job; what is
decided here, in one place for the child and the master alike, is how the end of an
attempt counts, and how a move is reported:

    CLOSED -> OPEN        CIRCUIT_BREAKER_FAILURE_THRESHOLD failures of distinct documents
                          in a row (no success between them)
    OPEN -> HALF_OPEN     CIRCUIT_BREAKER_RECOVERY_TIMEOUT has passed (trials let through)
    HALF_OPEN -> CLOSED   CIRCUIT_BREAKER_SUCCESS_THRESHOLD trials succeeded
    HALF_OPEN -> OPEN     one trial failed (on a document not already counted)

The breaker detects a broken tool, not a hostile document, so a failure counts only as
evidence about the tool: once per distinct document (its sha256; the job id for a record
without one) until the breaker's next success, so the retries of one job, or copies of
one upload, count once however often they fail; and a death by deadline or memory (what
a document can cost by itself: millions of drawing operators, deep nesting, a PostScript
`{ } loop`) does not count at all. Such a document fails, and after MAX_ATTEMPTS deaths
it is quarantined by its hash (`lua.NOTE_DEATH_LUA`), so it is not tried again.
"""

from __future__ import annotations

import enum

import structlog

from daemon.errors import MachineryError, SpoolFull

log = structlog.get_logger()


class BreakerState(enum.StrEnum):
    """A breaker's state, as the breaker hash in Redis holds it."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(enum.StrEnum):
    """How one attempt counts for its extractor's breaker (the job scripts' argument)."""

    SUCCESS = "success"
    FAILURE = "failure"
    NONE = "none"  # says nothing about the extractor: the breaker does not move


def outcome_of(error: BaseException | None) -> Outcome:
    """How an attempt that ended with `error` (None: it extracted the text) counts."""
    if error is None:
        return Outcome.SUCCESS
    # Only the extractor's own failures count: not the document's fault, and not a full
    # disk (retried, but it would open every family's breaker at once).
    if isinstance(error, MachineryError) and not isinstance(error, SpoolFull):
        return Outcome.FAILURE
    return Outcome.NONE


# Deaths a document causes by itself (the time or memory it takes; an unexplained
# SIGKILL is most likely the kernel's OOM killer): they say nothing about the tool.
DOCUMENT_DEATHS = frozenset({"deadline", "memory", "killed"})
# Deaths that count toward the document's quarantine: it took its worker down.
POISON_DEATHS = DOCUMENT_DEATHS | {"crashed"}


def death_outcome(reason: str) -> Outcome:
    """How the death of a child in the middle of a job counts (`reason` as
    `slots.exit_reason` words it): a crash under the tool is the extractor's failure
    (counted once per document, like any); a death by deadline, memory or an outside
    SIGKILL is the document's cost, and a shutdown nobody's."""
    if reason == "shutdown" or reason in DOCUMENT_DEATHS:
        return Outcome.NONE
    return Outcome.FAILURE


def is_poison_death(reason: str) -> bool:
    """Whether a child's death mid-job counts toward quarantining its document."""
    return reason in POISON_DEATHS


def log_breaker_move(family: str, before: str, after: str) -> None:
    """One warning, `breaker.<new state>`, when a script moved `family`'s breaker (the
    states before and after, as its reply gives them; "" when it did not touch it)."""
    if before and after and before != after:
        log.warning(f"breaker.{after}", family=family, previous=before)
