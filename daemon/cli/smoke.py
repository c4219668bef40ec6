"""`textractd smoke`: check a running service from outside (python -m daemon.health.smoke).

Without --url or --api-key it checks the service TEXTRACTD_URL / TEXTRACTD_API_KEY name,
else this installation's (the same defaults as `textractd extract`).
"""

from __future__ import annotations

from collections.abc import Sequence

from daemon.cli.registry import Command


def forward(args: Sequence[str]) -> int:
    from daemon.client.target import resolve_target
    from daemon.health.smoke import main

    args = list(args)
    given = {a.partition("=")[0] for a in args}
    if not given & {"-h", "--help"}:
        target = resolve_target()
        if "--url" not in given:
            args += ["--url", target.url]
        if "--api-key" not in given and target.api_key:
            args += ["--api-key", target.api_key]
    return main(args)


COMMAND = Command("smoke", "check a running service from outside: health, metrics, an "
                           "extraction, breakers (exit 0 all passed, 1 one failed)",
                  forward=forward, order=30)
