"""The command line of textractd's programs: usage, --help and --version, nothing more.

The programs are configured by environment variables (over `$TEXTRACTD_HOME/.env`), not
by options, so their command line only says which variables matter and where the rest
are described. Each `__main__` parses it before importing or starting anything, so
--help, --version and a wrong option have no side effect: no socket, no Redis, no log.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence

from daemon import __version__
from daemon.config import documented_settings

NAME_WIDTH = 28
WIDTH = 79


def parse_command_line(prog: str, description: str, settings: Sequence[str],
                       argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse `argv` (default: sys.argv); --help and --version print and exit 0, a wrong
    option exits 2 with the usage on stderr (argparse's rules)."""
    parser = argparse.ArgumentParser(prog=prog, description=textwrap.fill(description, WIDTH),
                                     epilog=settings_epilog(settings),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"textractd {__version__}")
    return parser.parse_args(argv)


def settings_epilog(names: Sequence[str]) -> str:
    """The environment variables `names`, each with its meaning and default, then where
    every other setting is described. Raises KeyError for a name that is not a setting."""
    known = {name: (default, meaning) for name, default, meaning in documented_settings()}
    lines = ["It takes no other options: environment variables (read over",
             "$TEXTRACTD_HOME/.env) configure it. Those that matter most here:"]
    for name in names:
        default, meaning = known[name]
        label = f"  {name}"
        if len(label) >= NAME_WIDTH - 1:  # a long name gets a line of its own
            lines.append(label)
            label = ""
        lines.append(textwrap.fill(f"{meaning} (default: {_shown(default)})", WIDTH,
                                   initial_indent=label.ljust(NAME_WIDTH),
                                   subsequent_indent=" " * NAME_WIDTH))
    lines.append(textwrap.fill("TEXTRACTD_HOME: the folder holding .env, var/ and logs/ "
                               "(default: the checkout). Every setting, its default and its "
                               "meaning: README.md, section \"Configuration\".", WIDTH))
    return "\n".join(lines)


def _shown(default: object) -> str:
    if default in ("", ()):
        return "empty"
    return str(default).lower() if isinstance(default, bool) else str(default)
