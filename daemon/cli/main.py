"""`textractd`: one command for what people do with textractd (console entry point).

    textractd extract PATH...     text of files and folders through a running service
    textractd health [COMPONENT]  the operators' checks (python -m daemon.health)
    textractd smoke               check a running service from outside
    textractd bench               the benchmark (source checkouts only)

Exit 2 on a usage error, as argparse does; each subcommand documents its other codes.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence

from daemon import __version__
from daemon.cli.registry import Command, commands

PROG = "textractd"
EXIT_USAGE = 2


def build_parser(registry: Sequence[Command]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill("textractd: document text extraction over HTTP. Run "
                                  "`textractd COMMAND --help` for a command's own "
                                  "options.", 79))
    parser.add_argument("--version", action="version", version=f"textractd {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in registry:
        # A forwarding command's options belong to the program it forwards to.
        sub = subparsers.add_parser(
            command.name, help=command.summary, add_help=command.forward is None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            description=textwrap.dedent(command.description or command.summary))
        if command.configure is not None:
            command.configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    registry = commands()
    by_name = {c.name: c for c in registry}
    if args and args[0] in by_name and by_name[args[0]].forward is not None:
        return by_name[args[0]].forward(args[1:])  # type: ignore[misc]
    parser = build_parser(registry)
    namespace = parser.parse_args(args)
    if namespace.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    command = by_name[namespace.command]
    assert command.run is not None
    return command.run(namespace)
