"""The subcommands of `textractd`: every module of daemon.cli that defines `COMMAND`.

A command either parses its own options (`configure` adds them to its subparser, `run`
gets the namespace) or forwards its arguments untouched to a program that already has a
command line (`forward`: `textractd health ...` is `python -m daemon.health ...`).
Command modules import their heavy parts inside `run`/`forward`, so `textractd --help`
loads no HTTP client, no Redis, no textract.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    summary: str  # one line in `textractd --help`
    run: Callable[[argparse.Namespace], int] | None = None
    configure: Callable[[argparse.ArgumentParser], None] | None = None
    forward: Callable[[Sequence[str]], int] | None = None
    description: str = ""  # the subcommand's own --help text (default: the summary)
    order: int = 50  # place in the list: everyday commands first


def commands() -> list[Command]:
    """Every command of the package, in `order`, then by name."""
    import daemon.cli

    found = []
    for info in pkgutil.iter_modules(daemon.cli.__path__):
        if info.ispkg or info.name.startswith("_"):  # a command's parts; __main__ runs
            continue
        module = importlib.import_module(f"daemon.cli.{info.name}")
        command = getattr(module, "COMMAND", None)
        if isinstance(command, Command):
            found.append(command)
    return sorted(found, key=lambda c: (c.order, c.name))
