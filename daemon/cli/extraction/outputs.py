"""Where `textractd extract` writes, and how, so that an interrupted run leaves no
half-written file: each text goes to a temporary name in its folder, then is renamed
over the final one (atomic on POSIX); the manifest gets whole lines, flushed one by one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from daemon.cli.extraction.inputs import TEMP_SUFFIX, Input, UsageError

CHUNK = 1 << 20


def output_path(item: Input, out_dir: Path | None) -> Path | None:
    """`<name>.txt` beside the input (`report.pdf` -> `report.pdf.txt`: never the name of
    another input, such as a `report.txt` beside it), or the same under `out_dir`
    mirroring the tree; None for stdin without -o (its text goes to stdout)."""
    if out_dir is not None:
        return out_dir.joinpath(*item.relative.parts).with_name(item.relative.name + ".txt")
    if item.path is None:
        return None
    return item.path.with_name(item.path.name + ".txt")


def check_distinct(outputs: dict[Input, Path | None]) -> None:
    """UsageError when two inputs would write the same output file."""
    seen: dict[Path, Input] = {}
    for item, path in outputs.items():
        if path is None:
            continue
        other = seen.setdefault(path, item)
        if other is not item:
            raise UsageError(f"{other.shown} and {item.shown} would both write {path}")


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as f:  # the text as is
            f.write(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Manifest:
    """The JSON Lines manifest: one object per document, written whole and flushed.

    Without --resume it starts empty; with it, earlier lines are kept and read back: a
    document whose last line says `done` with the same sha256 (and whose text file is
    still there) is not extracted again."""

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        self.previous = dict(_last_lines(path)) if resume and path.exists() else {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume:
            _end_with_newline(path)
        self.file: IO[str] = open(path, "a" if resume else "w", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def already_done(self, key: str, sha256: str, output: Path | None) -> bool:
        """Whether the last line for `key` is `done` for these bytes, with its text where
        this run would write it (another -o DIR, or a deleted file, means redo it)."""
        record = self.previous.get(key)
        if not record or record.get("state") != "done" or record.get("sha256") != sha256:
            return False
        if output is None:
            return record.get("output") is None
        return record.get("output") == str(output) and output.exists()

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _last_lines(path: Path) -> Iterator[tuple[str, dict]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash (not by Ctrl-C): that document is redone
            if isinstance(record, dict) and isinstance(record.get("key"), str):
                yield record["key"], record


def _end_with_newline(path: Path) -> None:
    """A line cut by a crash is closed, so the next record starts on a line of its own."""
    if path.exists() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
