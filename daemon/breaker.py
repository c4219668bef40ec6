"""The circuit breaker's rule: what counts against an extractor, its states, their log line.

One breaker per extractor family (pdf, docx, ...). Its arithmetic runs inside the job
scripts (`lua.BREAKER_LUA`), so it moves in the same atomic step as the job; what is
decided here, in one place for the child and the master alike, is how the end of an
attempt counts, and how a move is reported:

    CLOSED -> OPEN        CIRCUIT_BREAKER_FAILURE_THRESHOLD consecutive failures
    OPEN -> HALF_OPEN     CIRCUIT_BREAKER_RECOVERY_TIMEOUT has passed (trials let through)
    HALF_OPEN -> CLOSED   CIRCUIT_BREAKER_SUCCESS_THRESHOLD trials succeeded
    HALF_OPEN -> OPEN     one trial failed
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


def death_outcome(reason: str) -> Outcome:
    """How the death of a child in the middle of a job counts (`reason` as
    `slots.exit_reason` words it): every death but a shutdown is the extractor's failure
    (past the deadline, past the memory limit, killed or crashed under the tool)."""
    return Outcome.NONE if reason == "shutdown" else Outcome.FAILURE


def log_breaker_move(family: str, before: str, after: str) -> None:
    """One warning, `breaker.<new state>`, when a script moved `family`'s breaker (the
    states before and after, as its reply gives them; "" when it did not touch it)."""
    if before and after and before != after:
        log.warning(f"breaker.{after}", family=family, previous=before)
