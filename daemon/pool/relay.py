"""Children's summary lines, passed to stdout by the master so each is written once.

A child killed by SIGKILL the instant after it wrote a finished job's summary line, and
before its slot recorded that, left the master unable to tell whether the line was out:
logging it again made two lines, not logging it could make none. Two steps (write the
line, then mark it written) cannot be made one, so the line goes to a pipe per slot
that only the master reads. Whatever the child wrote is in that pipe, even after its
death; the master forwards it, and knows by each line's number which summaries are out.

A frame is a header (the summary's number in the slot, 0 for lines that answer to none,
and the line's length) and the line. Frames of one slot come in order; a frame a child
died while writing is dropped, as a line it never finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import struct
import sys
import time
from collections.abc import Iterable
from collections.abc import Set as AbstractSet

import structlog

HEADER = struct.Struct("<QI")
# A pipe of 1 MiB holds about two seconds of a busy child's lines: a master that is slow
# to forward them (its Redis calls) does not block the child's next write. The kernel's
# default (64 KiB) stays when the system allows no more (fs.pipe-max-size).
PIPE_BYTES = 1 << 20
# One read takes what a pipe holds.
READ_BYTES = PIPE_BYTES
# After forwarding, the master leaves the pipes for this long: a busy pool's lines then
# go out in batches, one write (and one wakeup of supervisord) for many jobs, and the
# master wakes at most 1 / PAUSE times a second for them. The first line after a quiet
# spell goes out at once.
PAUSE = 0.01


class SummaryRelay:
    """One pipe per slot, made by the master before it forks; read by it alone."""

    def __init__(self, slots: int) -> None:
        self._read_fds: list[int] = []
        self._write_fds: list[int] = []
        for _ in range(slots):
            read_fd, write_fd = os.pipe()
            with contextlib.suppress(OSError):
                fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            os.set_blocking(read_fd, False)
            self._read_fds.append(read_fd)
            self._write_fds.append(write_fd)
        self._pending = [b""] * slots  # the start of a frame not yet whole
        self._forwarded = [0] * slots  # the number of the last summary forwarded
        self._paused_until = 0.0  # time.monotonic()

    def waitables(self, now: float) -> list[int]:
        """The pipes for the master's wait: none while it pauses after forwarding."""
        return [] if now < self._paused_until else list(self._read_fds)

    def resumes_at(self, now: float) -> float:
        """When a pause ends (the master's wait must end then too); inf if none."""
        return self._paused_until if now < self._paused_until else math.inf

    def forward_woken(self, ended: AbstractSet[object]) -> None:
        """Forward what is waiting if the wait returned a pipe (`ended`), then pause."""
        if not ended.isdisjoint(self._read_fds):
            self.forward()
            self._paused_until = time.monotonic() + PAUSE

    def only_pipes(self, ended: AbstractSet[object]) -> bool:
        """Whether the wait returned nothing but pipes (or nothing)."""
        return ended <= set(self._read_fds)

    def child_end(self, slot_no: int) -> int:
        """In a forked child: close every other end and return the slot's write end."""
        for fd in self._read_fds:
            os.close(fd)
        for other, fd in enumerate(self._write_fds):
            if other != slot_no:
                os.close(fd)
        return self._write_fds[slot_no]

    def forwarded(self, slot_no: int) -> int:
        """The number of the slot's last summary line that went to stdout."""
        return self._forwarded[slot_no]

    def forward(self, slot_nos: Iterable[int] | None = None) -> None:
        """Pass the whole frames waiting in the pipes (those of `slot_nos`, or all) to
        stdout, in one write."""
        lines: list[bytes] = []
        for slot_no in range(len(self._read_fds)) if slot_nos is None else slot_nos:
            lines.extend(self._take(slot_no))
        if lines:
            sys.stdout.flush()  # the master's own lines before these
            sys.stdout.buffer.write(b"".join(lines))
            sys.stdout.buffer.flush()

    def child_died(self, slot_no: int) -> None:
        """Forward what the slot's dead child wrote; drop a frame it left unfinished."""
        self.forward([slot_no])
        self._pending[slot_no] = b""

    def _take(self, slot_no: int) -> list[bytes]:
        data = self._pending[slot_no]
        while True:
            try:
                chunk = os.read(self._read_fds[slot_no], READ_BYTES)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        lines, at = [], 0
        while len(data) - at >= HEADER.size:
            number, size = HEADER.unpack_from(data, at)
            end = at + HEADER.size + size
            if end > len(data):
                break
            lines.append(data[at + HEADER.size:end])
            if number:
                self._forwarded[slot_no] = number
            at = end
        self._pending[slot_no] = data[at:]
        return lines


class RelaySink:
    """A structlog logger for a child's summary lines: each rendered line goes into the
    slot's pipe as one frame, numbered with `number` (set before each line)."""

    def __init__(self, write_fd: int) -> None:
        self.write_fd = write_fd
        self.number = 0
        # Bound to the global configuration at each call, as structlog.get_logger() is:
        # the same processors as every other line.
        self.logger = structlog.wrap_logger(self)

    def msg(self, message: str) -> None:
        line = message.encode("utf-8", "replace") + b"\n"
        frame = memoryview(HEADER.pack(self.number, len(line)) + line)
        try:
            while frame:
                frame = frame[os.write(self.write_fd, frame):]
        except OSError:
            # The master is gone (EPIPE); this child is about to go too. The line
            # goes out by itself rather than not at all.
            sys.stdout.write(message + "\n")
            sys.stdout.flush()

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg
