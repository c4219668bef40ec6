"""The AppKeys that more than one of the api's modules reads or sets, each typed.

Kept apart so the imports run one way: app and monitoring set these, middleware reads
them, and none of them needs to import another for a key. The keys only `create_app`
uses sit in daemon.api.app; the monitor's own key in daemon.api.monitoring.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from daemon.api.ratelimit import RateLimiter

# Called once per finished request with (route, method, status, seconds).
RequestRecorder = Callable[[str, str, int, float], None]

# The request recorder, set by setup_monitoring; None: requests are not counted.
METRICS_HOOK = web.AppKey[RequestRecorder | None]("metrics_hook")
# Seconds a client should wait before retrying, given the queue's depth (the drain rate).
RETRY_AFTER = web.AppKey[Callable[[int], int]]("retry_after")
# The per-key request limit; None when RATE_LIMIT_PER_MINUTE is 0.
RATE_LIMITER = web.AppKey[RateLimiter | None]("rate_limiter")
