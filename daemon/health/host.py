"""The host-local checks: disk, memory, cpu, temp files, the api's port, supervisord.

They read this host (psutil, the file system, HTTP, supervisord's socket), not Redis.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path

import psutil

from daemon.config import Settings
from daemon.health.checks import CRITICAL, OK, WARNING, Check, Perf, pct_status, verdict, worst


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


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
        figures[label] = {"path": str(where), "percent": pct, "inodes_percent": round(inodes, 1)}
        perf.append(Perf(f"disk_{label}", pct, "%", f"{settings.disk_warn:g}",
                         f"{settings.disk_crit:g}", "0", "100"))
        level = worst([pct_status(pct, settings.disk_warn, settings.disk_crit),
                       pct_status(inodes, settings.disk_warn, settings.disk_crit)])
        if level != OK:
            problems.append((level, f"{label} ({where}) {pct:.0f}% full, inodes {inodes:.0f}%"))
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


def check_cpu(settings: Settings, percent: float) -> Check:
    load = os.getloadavg()
    figures = {"percent": percent, "load_average": [round(x, 2) for x in load],
               "cpus": os.cpu_count()}
    perf = (Perf("cpu", percent, "%", f"{settings.cpu_warn:g}", f"{settings.cpu_crit:g}",
                 "0", "100"), Perf("load1", round(load[0], 2), "", "", "", "0"))
    status = pct_status(percent, settings.cpu_warn, settings.cpu_crit)
    return Check("cpu", status, f"{percent:.0f}% busy, load {load[0]:.2f}", figures, perf)


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
               "path": str(settings.spool_dir)}
    perf = (Perf("temp_files", count, "", "", "", "0"),
            Perf("temp_size", size, "B", str(warn_bytes), "", "0"))
    text = f"{count} files, {size / 1048576:.1f} MB in {settings.spool_dir}"
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
    from supervisor.xmlrpc import SupervisorTransport

    proxy = xmlrpc.client.ServerProxy(
        "http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{sock}"))
    try:
        programs = proxy.supervisor.getAllProcessInfo()
        autostart = {c["name"]: c["autostart"] for c in proxy.supervisor.getAllConfigInfo()}
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
