"""The `textractd` command, and the command lines of the programs supervisord runs.

`textractd SUBCOMMAND` (daemon/cli/main.py) is made of the modules of this package that
define `COMMAND` (a registry.Command): adding a subcommand is adding one module here,
nothing else to edit. `program` holds the usage of `python -m daemon.api` and
`python -m daemon.pool`; it is re-exported so that older imports keep working.
"""

from daemon.cli.program import parse_command_line, settings_epilog
from daemon.cli.registry import Command, commands

__all__ = ["Command", "commands", "parse_command_line", "settings_epilog"]
