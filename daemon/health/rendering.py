"""The monitoring-plugins output of the checks, their problem lines, and the CLI.

    python -m daemon.health [COMPONENT ... | all] [--json] [--problems]

Exit codes follow monitoring-plugins: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also when
the check itself cannot run).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

import orjson

from daemon import __version__
from daemon.config import ConfigError, Settings
from daemon.health.checks import EXIT_CODES, OK, SEVERITY, UNKNOWN, Check, worst
from daemon.health.runner import COMPONENTS, run_checks


def render(checks: list[Check]) -> tuple[str, int]:
    """`TEXTRACTD STATUS - summary | perfdata`, then one line per problem; and the exit code."""
    status = worst([c.status for c in checks])
    problems = sorted((c for c in checks if c.status != OK),
                      key=lambda c: -SEVERITY[c.status])
    if problems:
        summary = ", ".join(f"{c.name} {c.status.upper()}" for c in problems)
        summary += f" ({len(problems)} of {len(checks)} checks)"
    else:
        summary = f"all {len(checks)} checks OK: " + "; ".join(
            f"{c.name} {c.message}" for c in checks if c.name in ("workers", "queue"))
        summary = summary.rstrip(": ")
    perf = " ".join(str(p) for c in checks for p in c.perf)
    lines = [f"TEXTRACTD {status.upper()} - {summary}" + (f" | {perf}" if perf else "")]
    lines += [problem_line(c) for c in problems]
    return "\n".join(lines), EXIT_CODES[status]


def problem_line(check: Check) -> str:
    return f"{check.status.upper()} {check.name}: {check.message}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would exit 2, which means CRITICAL
        raise ValueError(message)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="python -m daemon.health",
                     description="Check textractd's components; exit 0 OK, 1 WARNING, "
                                 "2 CRITICAL, 3 UNKNOWN.")
    parser.add_argument("components", nargs="*", metavar="COMPONENT",
                        help=f"{', '.join(COMPONENTS)} or all (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead")
    parser.add_argument("--version", action="version", version=f"textractd {__version__}")
    parser.add_argument("--problems", action="store_true",
                        help="print only the problem lines, nothing when all is OK (cron)")
    args = parser.parse_args(argv)
    names = [n.lower() for n in args.components] or ["all"]
    unknown = sorted(set(names) - {*COMPONENTS, "all"})
    if unknown:
        raise ValueError(f"unknown component {', '.join(unknown)}; choose from "
                         f"{', '.join(COMPONENTS)} or all")
    args.components = list(COMPONENTS) if "all" in names else list(dict.fromkeys(names))
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(sys.argv[1:] if argv is None else argv)
        checks = run_checks(Settings.from_env(), args.components)
    except (ValueError, ConfigError) as exc:
        print(f"TEXTRACTD UNKNOWN - {exc}")
        return EXIT_CODES[UNKNOWN]
    except Exception as exc:  # whatever breaks, the answer is UNKNOWN
        print(f"TEXTRACTD UNKNOWN - the health check failed: {type(exc).__name__}: {exc}")
        return EXIT_CODES[UNKNOWN]
    text, code = render(checks)
    if args.json:
        status = worst([c.status for c in checks])
        print(orjson.dumps({"status": status, "version": __version__, "exit_code": code,
                            "checks": {c.name: c.as_dict() for c in checks}},
                           option=orjson.OPT_INDENT_2).decode())
    elif args.problems:
        if code:
            print(text.partition("\n")[2])
    else:
        print(text)
    return code
