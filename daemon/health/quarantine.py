"""The operator's command for poison documents: list the quarantine, or lift one hash.

    python -m daemon.health.quarantine list          # one JSON object per document
    python -m daemon.health.quarantine lift SHA256   # let its uploads through again

Reads the same settings as the service (REDIS_URL, `.env`), so it needs access to Redis
rather than an API key; the api offers the same as GET /v1/quarantine and
DELETE /v1/quarantine/{sha256}. Exit codes: 0 done, 1 no such entry, 2 bad usage.
"""

from __future__ import annotations

import argparse
import re
import sys

import orjson

from daemon.config import Settings
from daemon.connection import connect
from daemon.store import lift_quarantine, quarantine_entries

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m daemon.health.quarantine",
                                     description="List or lift quarantined poison documents.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="documents quarantined now, one JSON line each")
    lift = commands.add_parser("lift", help="let uploads of this sha256 through again")
    lift.add_argument("sha256")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    client = connect(Settings.from_env())
    if args.command == "list":
        for entry in quarantine_entries(client):
            print(orjson.dumps(entry).decode())
        return 0
    sha256 = args.sha256.lower()
    if not _SHA256.fullmatch(sha256):
        print("a quarantine entry is named by a sha256 (64 hex digits)", file=sys.stderr)
        return 2
    if not lift_quarantine(client, sha256):
        print(f"{sha256} is not quarantined", file=sys.stderr)
        return 1
    print(f"lifted {sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
