"""`textractd extract PATH...`: the text of files and folders, through a running service.

Exit 0 when every document was extracted, 1 when some failed (listed at the end with
their error codes), 2 on a usage error or when the service cannot be reached or refuses
the key, 130 when interrupted (Ctrl-C: what finished is written, nothing half-written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from daemon.cli.registry import Command

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DESCRIPTION = """\
Send documents to a running textractd and write their text.

Each input's text goes to <name>.txt beside it (report.pdf -> report.pdf.txt), or under
-o DIR mirroring the folders given; `-` reads one document from stdin (its text goes to
stdout without -o). --jsonl FILE writes one JSON object per document: its job JSON
(state, error code, chars, metadata, duration_ms, ...), its page count, the input's
path, sha256 and output. --resume (with --jsonl) skips the documents that manifest
already has done with the same sha256, so an interrupted run finishes without redoing
anything.

The service: --url/--key, else TEXTRACTD_URL/TEXTRACTD_API_KEY, else this installation's
.env (its PORT, HOST and first API_KEY). Refusals for now (429, 503) are waited out as
Retry-After says, for as long as they last: no document is given up on for them; a
service lost mid-run (an api restart) is waited for up to 60 s.

exit status: 0 all extracted, 1 some documents failed, 2 usage or connection error,
130 interrupted."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a file, a folder (walked recursively) or - for stdin")
    parser.add_argument("-o", "--output", type=Path, metavar="DIR",
                        help="write the texts under DIR, mirroring the folders given")
    parser.add_argument("--jsonl", type=Path, metavar="FILE",
                        help="write a JSON Lines manifest: one job JSON per document")
    parser.add_argument("--no-text", action="store_true",
                        help="write no .txt files; the manifest carries each text")
    parser.add_argument("--resume", action="store_true",
                        help="skip documents the --jsonl manifest has done with the same "
                             "sha256 (and whose text file exists); append to it")
    parser.add_argument("--include", action="append", default=[], metavar="GLOB",
                        help="in folders, take only files matching GLOB (path under the "
                             "folder or name; repeatable)")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="in folders, leave out files matching GLOB (repeatable)")
    parser.add_argument("-j", "--concurrency", type=_positive_int, default=4, metavar="N",
                        help="documents in flight at once (default: 4)")
    parser.add_argument("--method", help="extraction method, e.g. tesseract or pdfminer "
                                         "(GET /v1/formats lists them per format)")
    parser.add_argument("--filename", metavar="NAME",
                        help="the name to give the service for stdin's document")
    parser.add_argument("--url", help="the service (default: TEXTRACTD_URL, else the local "
                                      "installation's .env)")
    parser.add_argument("--key", help="the API key (default: TEXTRACTD_API_KEY, else the "
                                      "local installation's .env)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="give up on one document after SECONDS (default: wait for "
                             "the service's own verdict)")
    parser.add_argument("--max-backoff", type=float, default=60.0, metavar="SECONDS",
                        help="longest wait on a 429/503 even when Retry-After asks for "
                             "more (default: 60)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar or per-document lines, only the summary")


def run(args: argparse.Namespace) -> int:
    from daemon.cli.extraction.inputs import UsageError
    from daemon.cli.extraction.runner import Options, extract_all

    if args.resume and args.jsonl is None:
        return _usage("--resume needs --jsonl FILE: the manifest is where the sha256 of "
                      "each done document is kept")
    if args.no_text and args.jsonl is None:
        return _usage("--no-text needs --jsonl FILE, or the texts would go nowhere")
    if args.paths.count("-") > 1:
        return _usage("- (stdin) can be given once")
    try:
        return extract_all(Options.from_args(args))
    except UsageError as exc:
        return _usage(str(exc))
    except KeyboardInterrupt:  # before the run's own handler is in place (reading stdin)
        return EXIT_INTERRUPTED


def _usage(message: str) -> int:
    print(f"textractd extract: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


COMMAND = Command("extract", "send files and folders to the service and write their text "
                             "(.txt files and/or a JSON Lines manifest)",
                  run=run, configure=configure, description=DESCRIPTION, order=10)
