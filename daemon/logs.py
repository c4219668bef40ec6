"""structlog set-up: one JSON object per line on stdout, which supervisord writes to logs/.

Call `configure_logging(process)` once in every process after it starts (after fork):
configured loggers do not cross process boundaries.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import orjson
import structlog


def _add_process(process: str):
    def add(_logger: object, _method: str, event: dict) -> dict:
        event.setdefault("process", process)
        event["pid"] = os.getpid()
        return event

    return add


_SECRETS: tuple[str, ...] = ()


def _dumps(obj: object, default: object = None) -> str:
    # orjson: several times faster than json.dumps on the per-job summary line.
    try:
        line = orjson.dumps(obj, default=str).decode()
    except TypeError:  # lone surrogates (undecodable header bytes): replace, never lose it
        line = scrub_surrogates(json.dumps(obj, default=str, ensure_ascii=False))
    for secret in _SECRETS:
        if secret in line:
            line = line.replace(secret, "[redacted]")
    return line


def scrub_surrogates(text: str) -> str:
    """`text` as valid UTF-8: lone surrogates (from undecodable bytes) become "?"."""
    return text.encode("utf-8", "replace").decode("utf-8")


def configure_logging(process: str, level: str | None = None,
                      secrets: tuple[str, ...] = ()) -> None:
    """Route structlog (and stdlib logging, e.g. aiohttp's) to JSON lines on stdout.

    `secrets` (the API keys) are replaced by "[redacted]" wherever they would appear."""
    global _SECRETS
    _SECRETS = tuple(s for s in secrets if s)
    level_no = logging.getLevelName((level or os.environ.get("LOG_LEVEL", "INFO")).upper())
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_process(process),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through stdlib (aiohttp, redis-py) come out as the same JSON.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_dumps),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_no)
