#!/usr/bin/env python3
"""The api's peak resident memory while many large uploads arrive at once (README figure).

    python scripts/measure_upload_rss.py [--clients 32] [--mib 16] [--workers]

Starts a stack of its own in a temporary folder (MAX_CONTENT_LENGTH = the upload size,
no workers unless --workers: the api is what is measured), sends the uploads from
threads, samples the api's RSS every 20 ms and prints the peak. Exits 1 when the peak is
not below clients x size x 1.5 or an upload was not accepted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import MIB, measure_upload_rss
from devtools.stack import Stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--mib", type=int, default=16, help="size of each upload")
    parser.add_argument("--workers", action="store_true", help="run the workers too")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra stack setting, e.g. UPLOAD_MEMORY_MB=128")
    args = parser.parse_args()
    size = args.mib * MIB
    env = {"MAX_CONTENT_LENGTH": str(size), "WORKER_PROCESSES": "1",
           **dict(item.split("=", 1) for item in args.env)}
    stack = Stack(env=env, workers=args.workers).start()
    try:
        result = measure_upload_rss(stack, clients=args.clients, upload_bytes=size)
    finally:
        stack.stop()
        shutil.rmtree(stack.root, ignore_errors=True)
    print(result.summary())
    print(f"peak_rss_mib={result.peak_rss / MIB:.0f}")
    accepted = result.statuses.get(202, 0) == result.clients
    return 0 if accepted and result.peak_rss < result.target_bytes else 1


if __name__ == "__main__":
    sys.exit(main())
