"""When to try a refused request again: only a 429 or 503, after Retry-After seconds.

Those two answers mean "not now" and come with Retry-After; every other error is an
answer about the request itself, so trying again would only repeat it. The wait is the
service's Retry-After (else an exponential backoff), capped by `max_backoff`, with a
little jitter so that many clients told the same number do not all return at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from daemon.client.errors import RETRYABLE_STATUSES, ClientError


class RetryNotice(NamedTuple):
    """Told to `on_retry` before each wait: which attempt failed, why, and the wait."""

    attempt: int
    code: str
    status: int
    retry_after: float | None
    delay: float


@dataclass(frozen=True)
class RetryPolicy:
    retries: int | None = 5  # None: retry for as long as the service says "not now"
    max_backoff: float = 60.0
    base: float = 0.5
    on_retry: Callable[[RetryNotice], None] | None = None

    def should_retry(self, error: ClientError, attempt: int, replayable: bool) -> bool:
        return (error.status in RETRYABLE_STATUSES and replayable
                and (self.retries is None or attempt < self.retries))

    def delay(self, error: ClientError, attempt: int) -> float:
        wanted = (error.retry_after if error.retry_after is not None
                  else self.base * 2 ** attempt)
        delay = min(wanted, self.max_backoff) * random.uniform(1.0, 1.1)
        if self.on_retry is not None:
            self.on_retry(RetryNotice(attempt + 1, error.code, error.status or 0,
                                      error.retry_after, delay))
        return delay
