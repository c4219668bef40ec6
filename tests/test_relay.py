"""The summary relay (daemon/pool/relay.py): real pipes, real forked writers.

What a child wrote before it died reaches stdout whole and once; the master knows by
number which summary lines are out; a frame cut short by the child's death is dropped.
The end to end case (a pool child SIGKILLed right after its line) is in
tests/test_child_faults.py.
"""

from __future__ import annotations

import multiprocessing
import os
import time

import orjson
import pytest

from daemon.pool.relay import HEADER, PAUSE, RelaySink, SummaryRelay


def _write_lines(relay: SummaryRelay, slot_no: int, lines: list[tuple[int, dict]],
                 cut_last_frame: bool = False) -> None:
    """A forked writer: frames through the slot's pipe, as a pool child writes them."""
    fd = relay.child_end(slot_no)
    sink = RelaySink(fd)
    for number, event in lines:
        sink.number = number
        sink.msg(orjson.dumps(event).decode())
    if cut_last_frame:  # dies halfway through a frame
        line = orjson.dumps({"event": "job.done", "job_id": "cut"}) + b"\n"
        os.write(fd, HEADER.pack(99, len(line)) + line[:10])
    os._exit(0)


def _run_writer(relay: SummaryRelay, slot_no: int, lines: list[tuple[int, dict]],
                cut_last_frame: bool = False) -> None:
    """Runs the writer to its end, forwarding meanwhile when it fills the pipe."""
    writer = multiprocessing.get_context("fork").Process(
        target=_write_lines, args=(relay, slot_no, lines, cut_last_frame))
    writer.start()
    deadline = time.monotonic() + 10
    while writer.is_alive() and time.monotonic() < deadline:
        writer.join(0.05)
        if writer.is_alive():
            relay.forward()  # a line larger than the pipe: read it in pieces
    assert writer.exitcode == 0


def _stdout_events(capfd: pytest.CaptureFixture[str]) -> list[dict]:
    return [orjson.loads(line) for line in capfd.readouterr().out.splitlines()]


def test_lines_a_dead_writer_left_in_its_pipe_reach_stdout_whole_in_order_and_numbered(
        capfd: pytest.CaptureFixture[str]) -> None:
    relay = SummaryRelay(2)
    big = "x" * 1_500_000  # more than the pipe holds: forwarded in pieces
    _run_writer(relay, 1, [(0, {"event": "job.retry", "n": 1}),
                           (7, {"event": "job.done", "n": 2, "error": big}),
                           (0, {"event": "page.done", "n": 3})])
    relay.child_died(1)

    events = _stdout_events(capfd)
    assert [e["n"] for e in events] == [1, 2, 3]
    assert events[1]["error"] == big
    assert relay.forwarded(1) == 7 and relay.forwarded(0) == 0


def test_a_frame_cut_short_by_the_writers_death_is_dropped_and_the_next_writer_is_read(
        capfd: pytest.CaptureFixture[str]) -> None:
    relay = SummaryRelay(1)
    _run_writer(relay, 0, [(3, {"event": "job.done", "n": 1})], cut_last_frame=True)
    relay.child_died(0)
    assert [e["n"] for e in _stdout_events(capfd)] == [1]
    assert relay.forwarded(0) == 3  # the cut frame's number never counts

    _run_writer(relay, 0, [(4, {"event": "job.done", "n": 2})])
    relay.forward()
    assert [e["n"] for e in _stdout_events(capfd)] == [2]
    assert relay.forwarded(0) == 4


def test_the_master_waits_on_the_pipes_except_while_it_pauses_after_forwarding(
        capfd: pytest.CaptureFixture[str]) -> None:
    relay = SummaryRelay(2)
    pipes = relay.waitables(time.monotonic())
    assert len(pipes) == 2 and relay.resumes_at(time.monotonic()) == float("inf")
    _run_writer(relay, 0, [(1, {"event": "job.done", "n": 1})])

    relay.forward_woken({-1})  # woken by something else: the lines wait
    assert _stdout_events(capfd) == []
    before = time.monotonic()
    relay.forward_woken({pipes[0]})
    after = time.monotonic()

    assert [e["n"] for e in _stdout_events(capfd)] == [1]
    assert relay.waitables(before) == []
    assert before + PAUSE <= relay.resumes_at(before) <= after + PAUSE
    assert relay.waitables(after + PAUSE) == pipes
    assert relay.only_pipes(set()) and relay.only_pipes({pipes[1]})
    assert not relay.only_pipes({pipes[0], -1})


def test_a_sink_whose_master_is_gone_writes_the_line_itself(
        capfd: pytest.CaptureFixture[str]) -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # no reader: the write fails with EPIPE (Python ignores SIGPIPE)
    sink = RelaySink(write_fd)
    try:
        sink.msg(orjson.dumps({"event": "job.done", "n": 1}).decode())
    finally:
        os.close(write_fd)
    assert [e["n"] for e in _stdout_events(capfd)] == [1]
