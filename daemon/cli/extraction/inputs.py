"""The documents `textractd extract` was given: files, folders walked, or `-` for stdin.

A folder is walked recursively (symlinked folders are not followed, so no loop) and its
files kept when they match an --include glob (default: every file) and no --exclude
glob; a glob is matched against the path under the folder and against the bare name.
Files named on the command line are always taken. Skipped in a walk: what this command
writes itself (`X.txt` beside a walked `X`, and its temporary files).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

STDIN = "-"
TEMP_SUFFIX = ".textractd-tmp"


class UsageError(ValueError):
    """Raised when the command line names something that cannot be read."""


@dataclass(frozen=True)
class Input:
    path: Path | None  # None: standard input
    relative: PurePosixPath  # where its output goes under -o DIR
    size: int

    @property
    def shown(self) -> str:
        return "-" if self.path is None else str(self.path)


def collect(arguments: Sequence[str], include: Sequence[str] = (),
            exclude: Sequence[str] = (), stdin_size: int = 0,
            ours: Sequence[Path] = ()) -> list[Input]:
    """The inputs in command-line order, a folder's files sorted; UsageError for a path
    that does not exist. `ours` (the -o folder, the manifest) are never walked into, so
    `textractd extract . -o texts` run twice does not extract its own texts."""
    skip = {p.resolve() for p in ours}
    found: list[Input] = []
    for argument in arguments:
        if argument == STDIN:
            found.append(Input(None, PurePosixPath("stdin"), stdin_size))
            continue
        path = Path(argument)
        if path.is_dir():
            found.extend(_walk(path, include, exclude, skip))
        elif path.is_file():
            found.append(Input(path, PurePosixPath(path.name), path.stat().st_size))
        else:
            raise UsageError(f"{argument}: no such file or folder")
    return found


def _walk(folder: Path, include: Sequence[str], exclude: Sequence[str],
          skip: set[Path]) -> list[Input]:
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if Path(top, d).resolve() not in skip)
        names = set(files)
        for name in sorted(files):
            if name.endswith(TEMP_SUFFIX) or (name.endswith(".txt") and name[:-4] in names):
                continue
            path = Path(top, name)
            if path.resolve() in skip:
                continue
            relative = PurePosixPath(path.relative_to(folder).as_posix())
            if _wanted(relative, include, exclude) and path.is_file():
                found.append(Input(path, relative, path.stat().st_size))
    return found


def _wanted(relative: PurePosixPath, include: Sequence[str], exclude: Sequence[str]) -> bool:
    def matches(globs: Sequence[str]) -> bool:
        return any(fnmatch.fnmatchcase(str(relative), g) or fnmatch.fnmatchcase(relative.name, g)
                   for g in globs)

    return (not include or matches(include)) and not matches(exclude)
