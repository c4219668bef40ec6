"""The dead letters from the command line: `python -m daemon.health.dlq list|show|replay|purge`.

The operators' twin of the api's /v1/dead-letters routes, talking to Redis directly (as
the health checks do), so it works with the api down. Every replay or purge writes one
audit line (JSON, on stderr) naming the operating-system user who ran it.

    list   [--code CODE] [--limit N] [--before ID] [--json]   newest first
    show   ID                                                 the record and its history
    replay ID... | --code CODE|*                              back on the queue, fresh attempts
    purge  ID... | --code CODE|* [--yes]                      delete letter and document
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Sequence

import orjson

from daemon.config import ConfigError, Settings
from daemon.connection import REDIS_DOWN, connect_async
from daemon.errors import ERROR_CODES
from daemon.store import DeadLetters, ReplayRefused, is_entry_id

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="List, show, replay and purge dead letters.")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="dead letters, newest first")
    listing.add_argument("--code", help="only this error code")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--before", help="the `next` of the previous page")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    show = sub.add_parser("show", help="one dead letter with its record and history")
    show.add_argument("id")
    for name, what in (("replay", "queue the jobs again with a fresh attempt count"),
                       ("purge", "delete the letters and the documents kept for replay")):
        action = sub.add_parser(name, help=what)
        action.add_argument("ids", nargs="*", metavar="ID")
        action.add_argument("--code", help="every letter of this error code (* for all)")
        if name == "purge":
            action.add_argument("--yes", action="store_true",
                                help="needed with --code: purging is not undone")
    return parser


def audit(action: str, **fields: object) -> None:
    """The one audit line of an action: who ran it (the OS user; the CLI holds no key)."""
    line = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "level": "info", "event": "audit", "process": "dlq", "action": action,
            "tenant": f"cli:{getpass.getuser()}", **fields}
    sys.stderr.write(orjson.dumps(line).decode() + "\n")


def _check_ids(ids: Sequence[str]) -> None:
    bad = [i for i in ids if not is_entry_id(i)]
    if bad:
        raise ValueError(f"not a dead letter id: {', '.join(bad)} (ids look like "
                         "1700000000000-0; `list` shows them)")


def _check_code(code: str | None) -> str | None:
    if code is not None and code != "*" and code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    return None if code == "*" else code


async def _targets(store: DeadLetters, args: argparse.Namespace) -> list[str]:
    if bool(args.ids) == bool(args.code):
        raise ValueError("give dead letter ids, or --code CODE (* for every code)")
    _check_ids(args.ids)
    return list(args.ids) if args.ids else await store.ids(_check_code(args.code))


async def run(args: argparse.Namespace, settings: Settings) -> int:
    client = connect_async(settings, fast_fail=False)
    store = DeadLetters(client)
    try:
        if args.command == "list":
            if not 1 <= args.limit <= 1000:
                raise ValueError("--limit must be from 1 to 1000")
            if args.before:
                _check_ids([args.before])
            letters, cursor = await store.page(limit=args.limit, before=args.before,
                                               code=_check_code(args.code))
            total = await store.count()
            if args.json:
                print(orjson.dumps({"dead_letters": letters, "next": cursor, "total": total},
                                   option=orjson.OPT_INDENT_2).decode())
            else:
                print(f"{total} dead letter(s)" + (f"; next page: --before {cursor}"
                                                   if cursor else ""))
                for d in letters:
                    died = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["dead_at"]))
                    print(f"{d['id']:<20} {died}  job {d['job_id']}  "
                          f"{d['error']['code'] or '?'}  attempts={d['attempts']}  "
                          f"{d['filename'] or ''}")
            return EXIT_OK
        if args.command == "show":
            _check_ids([args.id])
            letter = await store.get(args.id)
            if letter is None:
                print(f"no dead letter {args.id}", file=sys.stderr)
                return EXIT_FAILED
            print(orjson.dumps(letter, option=orjson.OPT_INDENT_2).decode())
            return EXIT_OK
        if args.command == "purge" and args.code and not args.yes:
            raise ValueError("purge --code deletes every matching letter: add --yes")
        failed = 0
        actor = f"cli:{getpass.getuser()}"
        for dead_id in await _targets(store, args):
            if args.command == "replay":
                try:
                    job_id = await store.replay(dead_id, actor)
                    print(f"{dead_id}: job {job_id} queued")
                    audit("dead_letter.replay", dead_letter_id=dead_id, job_id=job_id)
                except ReplayRefused as exc:
                    failed += 1
                    lift = (f"; lift it first: python -m daemon.health.quarantine lift "
                            f"{exc.sha256}" if exc.sha256 else "")
                    print(f"{dead_id}: not replayed ({exc.reason}{lift})", file=sys.stderr)
            else:
                purged = await store.purge(dead_id)
                if purged is None:
                    failed += 1
                    print(f"{dead_id}: no such dead letter", file=sys.stderr)
                else:
                    print(f"{dead_id}: job {purged} purged")
                    audit("dead_letter.purge", dead_letter_id=dead_id, job_id=purged)
        return EXIT_FAILED if failed else EXIT_OK
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None, prog: str = "python -m daemon.health.dlq") -> int:
    """The command line (`textractd dlq` runs it with its own `prog`)."""
    args = _parser(prog).parse_args(argv)
    try:
        return asyncio.run(run(args, Settings.from_env()))
    except (ValueError, ConfigError) as exc:
        print(f"dlq: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except REDIS_DOWN as exc:
        print(f"dlq: cannot reach Redis: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
