"""The host-local checks: disk, memory, cpu, temp files, the api's port, supervisord.

They read this host (psutil, the file system, HTTP, supervisord's socket), not Redis; only
the cpu check also weighs the queue's lag from the facts already read.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import xmlrpc.client
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psutil

from daemon.config import Settings
from daemon.health.checks import CRITICAL, OK, WARNING, Check, Perf, pct_status, verdict, worst
from daemon.health.facts import Facts, oldest_waiting_age


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def shown_path(path: Path, settings: Settings) -> str:
    """How a folder is named in a check's figures and message: relative to
    TEXTRACTD_HOME ("var", "var/spool"), never the install's absolute path, which
    /health/detailed would show to any key."""
    try:
        return str(path.relative_to(settings.home)) or "."
    except ValueError:
        return "outside TEXTRACTD_HOME"


def check_disk(settings: Settings) -> Check:
    seen: dict[int, list[str]] = {}
    usage: dict[int, tuple[float, float, Path]] = {}
    for label, path in (("var", settings.var_dir), ("logs", settings.log_dir)):
        where = _existing(path)
        dev = os.stat(where).st_dev
        seen.setdefault(dev, []).append(label)
        if dev not in usage:
            vfs = os.statvfs(where)
            inodes = 100.0 * (vfs.f_files - vfs.f_ffree) / vfs.f_files if vfs.f_files else 0.0
            usage[dev] = (psutil.disk_usage(str(where)).percent, inodes, where)
    figures, perf, problems = {}, [], []
    for dev, labels in seen.items():
        pct, inodes, where = usage[dev]
        label = "+".join(labels)
        shown = shown_path(where, settings)
        figures[label] = {"path": shown, "percent": pct, "inodes_percent": round(inodes, 1)}
        perf.append(Perf(f"disk_{label}", pct, "%", f"{settings.disk_warn:g}",
                         f"{settings.disk_crit:g}", "0", "100"))
        level = worst([pct_status(pct, settings.disk_warn, settings.disk_crit),
                       pct_status(inodes, settings.disk_warn, settings.disk_crit)])
        if level != OK:
            problems.append((level, f"{label} ({shown}) {pct:.0f}% full, inodes {inodes:.0f}%"))
    base = ", ".join(f"{k} {v['percent']:.0f}%" for k, v in figures.items())
    return verdict("disk", problems, base, figures, tuple(perf))


def check_memory(settings: Settings) -> Check:
    mem = psutil.virtual_memory()
    figures = {"percent": mem.percent, "total": mem.total, "available": mem.available}
    perf = (Perf("memory", mem.percent, "%", f"{settings.memory_warn:g}",
                 f"{settings.memory_crit:g}", "0", "100"),)
    status = pct_status(mem.percent, settings.memory_warn, settings.memory_crit)
    text = f"{mem.percent:.0f}% used, {mem.available / 1048576:.0f} MB available"
    return Check("memory", status, text, figures, perf)


# --- cpu ------------------------------------------------------------------------------------
# A busy CPU is what a pool extracting at full speed looks like, so saturation alone is
# at most a WARNING. It becomes CRITICAL only while the queue lags too: the oldest job no
# child has taken yet has waited QUEUE_LAG (a minute by default) or more (that age grows by
# a second every second the children stay behind), which is when more capacity is the
# answer. The figure is sustained over CPU_WINDOW (also a minute by default).
LOAD_AVERAGE_S = 60.0  # the horizon of the kernel's load1, the one-shot figure
SATURATED_AND_LAGGING = "CPU saturated and queue lag growing: add workers or hosts"


@dataclass(frozen=True)
class CpuReading:
    percent: float  # busy share of the host's cores, 0-100
    measured: str  # how: "cpu_times" (a window of samples) or "load1_per_core"
    window_s: float


def _busy_and_total(fields: dict[str, float]) -> tuple[float, float]:
    """(busy, total) CPU seconds since boot from psutil.cpu_times() as a dict."""
    # Linux counts guest time inside user/nice already; iowait is a CPU with nothing to do.
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    return total - fields["idle"] - fields.get("iowait", 0.0), total


def load_reading() -> CpuReading:
    """The kernel's 1-minute load average per core, for a one-shot command with no history.

    Already a one-minute figure (no second of waiting in the check, no sample to keep),
    and what check_load reads. It counts tasks waiting on the disk too and exceeds one per
    core when work waits for a CPU; the percent is capped at 100.
    """
    cpus = os.cpu_count() or 1
    return CpuReading(min(100.0, 100.0 * os.getloadavg()[0] / cpus), "load1_per_core",
                      LOAD_AVERAGE_S)


class CpuWindow:
    """The host's CPU share over the last `window_s` (CPU_WINDOW), from psutil.cpu_times()
    deltas.

    A long-running process (the api's monitor) calls `sample()` about once a second; the
    share is taken between the newest sample and the newest one at least a window old (a
    shorter span just after start, the load average before the first second).
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, float, float]] = deque()
        self.sample()

    def sample(self) -> None:
        now = time.monotonic()
        self.samples.append((now, *_busy_and_total(psutil.cpu_times()._asdict())))
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window_s:
            self.samples.popleft()

    def reading(self) -> CpuReading:
        (start, busy0, total0), (end, busy1, total1) = self.samples[0], self.samples[-1]
        if end - start < 1.0 or total1 <= total0:
            return load_reading()
        share = 100.0 * (busy1 - busy0) / (total1 - total0)
        return CpuReading(min(100.0, max(0.0, share)), "cpu_times", round(end - start, 1))


def one_shot_reading(settings: Settings) -> CpuReading:
    """The CPU figure for a command that runs once (the CLI, healthcheck.sh).

    With a window of a minute or more, the load average (no waiting). A shorter
    CPU_WINDOW cannot be read off a one-minute average, so it is measured: the command
    takes that long to answer.
    """
    if settings.cpu_window >= LOAD_AVERAGE_S:
        return load_reading()
    window = CpuWindow(settings.cpu_window)
    time.sleep(settings.cpu_window)  # the measurement itself: the span the share covers
    window.sample()
    return window.reading()


def check_cpu(settings: Settings, reading: CpuReading, facts: Facts | None) -> Check:
    load = os.getloadavg()
    waited = oldest_waiting_age(facts) if facts is not None and not facts.error else None
    lagging = waited is not None and waited >= settings.queue_lag
    figures = {"percent": round(reading.percent, 1), "measured": reading.measured,
               "window_s": reading.window_s, "load_average": [round(x, 2) for x in load],
               "cpus": os.cpu_count(),
               "oldest_waiting_age_s": round(waited, 1) if waited is not None else None,
               "queue_lagging": lagging if waited is not None else None}
    perf = (Perf("cpu", round(reading.percent, 1), "%", f"{settings.cpu_warn:g}",
                 f"{settings.cpu_crit:g}", "0", "100"),
            Perf("load1", round(load[0], 2), "", "", "", "0"))
    if reading.measured == "cpu_times":
        base = f"{reading.percent:.0f}% busy over {reading.window_s:.0f} s, load {load[0]:.2f}"
    else:
        base = f"load {load[0]:.2f} on {os.cpu_count()} cores over 1 min: {reading.percent:.0f}%"
    if reading.percent < settings.cpu_warn:
        return Check("cpu", OK, base, figures, perf)
    if reading.percent < settings.cpu_crit:
        return Check("cpu", WARNING, f"above CPU_WARN={settings.cpu_warn:g}% ({base})",
                     figures, perf)
    if lagging:
        return Check("cpu", CRITICAL, f"{SATURATED_AND_LAGGING} ({base}; the oldest waiting "
                                      f"job {waited:.0f} s)", figures, perf)
    queue = ("the queue keeps up" if waited is not None
             else "the queue's lag is unknown (Redis not read)")
    return Check("cpu", WARNING, f"CPU saturated, but {queue}: busy, not failing ({base})",
                 figures, perf)


def temp_files(spool: Path) -> tuple[int, int]:
    """Files and bytes under the spool: payloads being extracted and the tools' scratch."""
    count = size = 0
    for folder, _dirs, files in os.walk(spool):
        for name in files:
            try:
                size += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue  # removed while we looked: the normal life of a temp file
            count += 1
    return count, size


def check_tempfiles(settings: Settings) -> Check:
    count, size = temp_files(settings.spool_dir)
    warn_bytes = int(settings.temp_files_warn_mb * 1048576)
    figures = {"files": count, "bytes": size, "warn_mb": settings.temp_files_warn_mb,
               "path": shown_path(settings.spool_dir, settings)}
    perf = (Perf("temp_files", count, "", "", "", "0"),
            Perf("temp_size", size, "B", str(warn_bytes), "", "0"))
    text = f"{count} files, {size / 1048576:.1f} MB in {shown_path(settings.spool_dir, settings)}"
    if size > warn_bytes:
        return Check("tempfiles", WARNING, f"{text}: above {settings.temp_files_warn_mb:g} MB",
                     figures, perf)
    return Check("tempfiles", OK, text, figures, perf)


def api_url(settings: Settings) -> str:
    host = settings.host
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def check_api(settings: Settings, timeout: float = 3.0) -> Check:
    if settings.role == "worker":
        return Check("api", OK, "no api on this host (ROLE=worker)")
    url = f"{api_url(settings)}/health"
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            status = reply.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check("api", CRITICAL, f"{url} does not answer: {reason}", {"url": url})
    took = time.perf_counter() - started
    figures = {"url": url, "status": status, "latency_ms": round(took * 1000, 1)}
    perf = (Perf("api_latency", round(took, 6), "s", "", "", "0"),)
    if status != 200:
        return Check("api", CRITICAL, f"{url} answered {status}", figures, perf)
    return Check("api", OK, f"/health answered in {took * 1000:.0f} ms", figures, perf)


def check_supervisor(settings: Settings) -> Check:
    """Programs supervisord should be running: FATAL or stopped ones are named."""
    sock = settings.var_dir / "supervisor.sock"
    if not sock.exists():
        return Check("supervisor", OK, "no supervisord here (no var/supervisor.sock)")
    from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]  # no stubs

    proxy = xmlrpc.client.ServerProxy(
        "http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{sock}"))
    try:
        # XML-RPC answers are untyped; supervisord's are lists of structs.
        programs = cast(list[dict[str, Any]], proxy.supervisor.getAllProcessInfo())
        configs = cast(list[dict[str, Any]], proxy.supervisor.getAllConfigInfo())
        autostart = {c["name"]: c["autostart"] for c in configs}
    except (OSError, xmlrpc.client.Error) as exc:
        return Check("supervisor", CRITICAL, f"supervisord does not answer on {sock}: {exc}")
    states = {p["name"]: p["statename"] for p in programs}
    problems: list[tuple[str, str]] = []
    for name, state in sorted(states.items()):
        if state == "FATAL":
            problems.append((CRITICAL, f"{name} is FATAL (it kept exiting at start; see "
                                       f"logs/{name}.log, then supervisorctl start {name})"))
        elif state == "BACKOFF":
            problems.append((WARNING, f"{name} is restarting (BACKOFF)"))
        elif state in ("STOPPED", "EXITED") and autostart.get(name):
            problems.append((CRITICAL, f"{name} is {state} (supervisorctl start {name})"))
    base = ", ".join(f"{n} {s}" for n, s in sorted(states.items()))
    return verdict("supervisor", problems, base, {"programs": states}, ())
