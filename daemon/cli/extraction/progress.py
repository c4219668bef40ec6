"""What `textractd extract` shows while it works, on stderr (stdout may carry a text).

On a terminal, one tqdm bar: files done/total, files/s, ETA, and bytes, failures and
back-offs after it. Elsewhere (a pipe, a log file, cron), one plain line per document,
so that the output reads top to bottom and greps.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Protocol


def megabytes(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


class Tally:
    """The counts both displays and the final summary show."""

    def __init__(self, total: int, total_bytes: int) -> None:
        self.total = total
        self.total_bytes = total_bytes
        self.done = 0  # finished, whatever the outcome
        self.skipped = 0
        self.bytes = 0
        self.failures: list[tuple[str, str, str]] = []  # (input, code, message)
        self.retries = 0
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Display(Protocol):
    def finished(self, shown: str, record: dict, tally: Tally) -> None: ...
    def backed_off(self, message: str, tally: Tally) -> None: ...
    def close(self) -> None: ...


class Bar:
    FORMAT = ("{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} files "
              "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")

    def __init__(self, tally: Tally, stream: IO[str]) -> None:
        from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no stubs

        # The postfix given at once: the first frame already shows bytes and failures.
        self.bar = tqdm(total=tally.total, unit=" files", file=stream, bar_format=self.FORMAT,
                        dynamic_ncols=True, mininterval=0.2, smoothing=0.1,
                        postfix=self._postfix_text(tally))

    @staticmethod
    def _postfix_text(tally: Tally) -> str:
        parts = [f"{megabytes(tally.bytes)}/{megabytes(tally.total_bytes)}",
                 f"{len(tally.failures)} failed"]
        if tally.retries:
            parts.append(f"{tally.retries} back-offs")
        return ", ".join(parts)

    def _postfix(self, tally: Tally) -> None:
        self.bar.set_postfix_str(self._postfix_text(tally), refresh=False)

    def finished(self, shown: str, record: dict, tally: Tally) -> None:
        self._postfix(tally)
        self.bar.update(1)

    def backed_off(self, message: str, tally: Tally) -> None:
        self._postfix(tally)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class Lines:
    def __init__(self, tally: Tally, stream: IO[str]) -> None:
        self.stream = stream

    def finished(self, shown: str, record: dict, tally: Tally) -> None:
        counter = f"[{tally.done}/{tally.total}]"
        if record.get("skipped"):
            line = f"{counter} skipped {shown}: done before, same sha256"
        elif record["state"] == "done":
            seconds = (record.get("duration_ms") or 0) / 1000
            line = (f"{counter} done {shown}: {record.get('bytes') or 0} bytes -> "
                    f"{record.get('chars') or 0} chars in {seconds:.2f} s")
        else:
            error = record.get("error") or {}
            line = f"{counter} FAILED {shown}: {error.get('code')}: {error.get('message')}"
        print(line, file=self.stream, flush=True)

    def backed_off(self, message: str, tally: Tally) -> None:
        print(message, file=self.stream, flush=True)

    def close(self) -> None:
        pass


def display_for(tally: Tally, stream: IO[str] = sys.stderr, quiet: bool = False) -> Display:
    if quiet:
        return Quiet()
    return Bar(tally, stream) if stream.isatty() else Lines(tally, stream)


class Quiet:
    def finished(self, shown: str, record: dict, tally: Tally) -> None:
        pass

    def backed_off(self, message: str, tally: Tally) -> None:
        pass

    def close(self) -> None:
        pass


def summary(tally: Tally, interrupted: bool) -> str:
    extracted = tally.done - tally.skipped - len(tally.failures)
    rate = (tally.done - tally.skipped) / tally.elapsed if tally.elapsed > 0 else 0.0
    head = "interrupted: " if interrupted else ""
    lines = [f"{head}extracted {extracted} of {tally.total} files "
             f"({megabytes(tally.bytes)}) in {tally.elapsed:.1f} s, {rate:.2f} files/s"
             + (f"; {tally.skipped} skipped (done before)" if tally.skipped else "")
             + (f"; {tally.retries} back-offs" if tally.retries else "")
             + (f"; {len(tally.failures)} failed:" if tally.failures else "")]
    lines += [f"  {shown}: {code}: {message}" for shown, code, message in sorted(tally.failures)]
    if interrupted:
        lines.append(f"{tally.total - tally.done} not done; run the same command with "
                     "--resume (and --jsonl) to finish without redoing the rest")
    return "\n".join(lines)
