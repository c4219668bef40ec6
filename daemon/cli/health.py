"""`textractd health`: the operators' checks, exactly `python -m daemon.health`."""

from __future__ import annotations

from collections.abc import Sequence

from daemon.cli.registry import Command


def forward(args: Sequence[str]) -> int:
    from daemon.health.rendering import main

    return main(list(args))


COMMAND = Command(
    "health", "check redis, workers, api, disk, memory, cpu, queue, breakers "
              "(exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)",
    forward=forward, order=20)
