"""`textractd dlq`: the dead letters, exactly `python -m daemon.health.dlq`."""

from __future__ import annotations

from collections.abc import Sequence

from daemon.cli.registry import Command


def forward(args: Sequence[str]) -> int:
    from daemon.health.dlq import main

    return main(list(args), prog="textractd dlq")


COMMAND = Command(
    "dlq", "list, show, replay or purge dead letters (jobs that failed on every attempt)",
    forward=forward, order=25)
