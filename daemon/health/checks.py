"""Health checks, one per component, and their monitoring-plugins CLI.

    python -m daemon.health [COMPONENT ... | all] [--json] [--problems]

Every check returns a `Check` (ok / warning / critical / unknown, a one-line message,
figures and perfdata). The checks never talk to Redis themselves: the facts are fetched
first (`gather` for the CLI, `gather_async` for the api, two pipelined round trips
either way) and the checks judge them, so the CLI, `/health/detailed` and `/metrics`
read the same numbers the same way. Exit codes follow monitoring-plugins: 0 OK,
1 WARNING, 2 CRITICAL, 3 UNKNOWN (also when the check itself cannot run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psutil
import redis

from daemon.config import ConfigError, Settings
from daemon.connection import REDIS_DOWN, connect
from daemon.documents.formats import FORMATS
from daemon.store import (
    CHORES,
    DEAD_LETTERS,
    DEFERRED,
    DEPTH,
    GROUP,
    JOB_COUNTERS,
    RESTARTS,
    STREAM,
    breaker_key,
    consumer_name,
    heartbeat_key,
    restarts_minute_key,
)

OK, WARNING, CRITICAL, UNKNOWN = "ok", "warning", "critical", "unknown"
EXIT_CODES = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}
# How bad, for the overall verdict: an UNKNOWN may hide a CRITICAL, so it outranks WARNING.
SEVERITY = {OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3}
COMPONENTS = ("redis", "workers", "api", "chores", "disk", "memory", "cpu", "tempfiles",
              "queue", "breaker", "supervisor")
NEEDS_REDIS = frozenset({"redis", "workers", "chores", "queue", "breaker"})
FAMILIES = tuple(sorted({f.family for f in FORMATS.values()}))

PENDING_SAMPLE = 200  # oldest pending entries looked at one by one
DEADLINE_GRACE = 10.0  # the master kills at JOB_TIMEOUT; past this much more it did not
RESTART_WINDOW_MIN = 15
ABNORMAL_RESTARTS = frozenset({"crashed", "killed", "boot-failed"})
DEAD_LETTER_RECENT = 3600.0  # a dead letter newer than this is news worth a warning
REDIS_LATENCY_WARN, REDIS_LATENCY_CRIT = 0.1, 1.0
# Restarts per minute (reason -> count), so "recent" needs no state in the checker.


def recent_minutes(now: float, count: int) -> list[int]:
    current = int(now // 60)
    return list(range(current - count + 1, current + 1))


@dataclass(frozen=True)
class Perf:
    """One monitoring-plugins perfdata item: 'label'=value[UOM];warn;crit;min;max."""

    label: str
    value: float
    uom: str = ""
    warn: str = ""
    crit: str = ""
    min: str = ""
    max: str = ""

    def __str__(self) -> str:
        value = f"{self.value:.6g}" if isinstance(self.value, float) else str(self.value)
        tail = ";".join((self.warn, self.crit, self.min, self.max)).rstrip(";")
        return f"'{self.label}'={value}{self.uom}" + (f";{tail}" if tail else "")


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    message: str
    figures: dict = field(default_factory=dict)
    perf: tuple[Perf, ...] = ()

    def as_dict(self) -> dict:
        return {"status": self.status, "message": self.message, "figures": self.figures}


def worst(statuses: list[str]) -> str:
    return max(statuses, key=SEVERITY.__getitem__, default=OK)


def _s(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _id_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0] or 0)


# --- the facts from Redis ---------------------------------------------------------------
@dataclass
class Facts:
    """What the Redis-side checks judge, read in two pipelined round trips."""

    now: float = 0.0
    error: str = ""  # why Redis could not be read; empty when it could
    latency_s: float = 0.0
    info: dict = field(default_factory=dict)
    chores: dict[str, str] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    recent_restarts: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)
    depth: int = 0
    stream_length: int = 0
    lag: int | None = None
    last_delivered: str = ""
    pending: int = 0
    oldest_pending_id: str = ""
    # (consumer, seconds since delivered, entry id) of the oldest pending entries
    pending_entries: list[tuple[str, float, str]] = field(default_factory=list)
    consumers: dict[str, float] = field(default_factory=dict)  # name -> idle s
    heartbeats: dict[str, dict] = field(default_factory=dict)
    dead_letters: int = 0
    newest_dead_ms: int = 0
    deferred: int = 0
    oldest_waiting_ms: int = 0  # the first entry no consumer has read yet
    breakers: dict[str, dict[str, str]] = field(default_factory=dict)


def decode_hash(raw: object) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def int_hash(raw: object) -> dict[str, int]:
    return {k: int(float(v or 0)) for k, v in decode_hash(raw).items()}


def failed_total(jobs: dict[str, int]) -> int:
    """Failed jobs of every code in JOB_COUNTERS (kept as failed:<code> fields)."""
    return sum(v for k, v in jobs.items() if k.startswith("failed:"))


def _queue_first(pipe: redis.client.Pipeline, now: float) -> None:
    pipe.info()
    pipe.hgetall(CHORES)
    pipe.hgetall(RESTARTS)
    pipe.hgetall(JOB_COUNTERS)
    pipe.get(DEPTH)
    pipe.xlen(STREAM)
    pipe.xinfo_groups(STREAM)
    pipe.xpending(STREAM, GROUP)
    pipe.xpending_range(STREAM, GROUP, min="-", max="+", count=PENDING_SAMPLE)
    pipe.xinfo_consumers(STREAM, GROUP)
    pipe.xlen(DEAD_LETTERS)
    pipe.xrevrange(DEAD_LETTERS, count=1)
    pipe.zcard(DEFERRED)
    for family in FAMILIES:
        pipe.hgetall(breaker_key(family))
    for minute in recent_minutes(now, RESTART_WINDOW_MIN):
        pipe.hgetall(restarts_minute_key(minute))


def _ok(value: object, default: object) -> object:
    """A pipeline reply, or `default` when that one command failed (e.g. no stream yet)."""
    return default if isinstance(value, Exception) else value


def _parse_first(replies: list, facts: Facts) -> None:
    info, chores_raw, restarts, jobs, depth, length, groups, summary, entries, consumers, \
        dead, newest_dead, deferred, *rest = replies
    for reply in (info, chores_raw, restarts, jobs, depth):
        if isinstance(reply, Exception):
            raise reply  # a basic command failed: Redis itself is unwell (LOADING, auth)
    facts.info = info
    facts.chores = decode_hash(chores_raw)
    facts.restarts = int_hash(restarts)
    facts.jobs = int_hash(jobs)
    facts.depth = int(depth or 0)
    facts.stream_length = int(_ok(length, 0))
    group = next((g for g in _ok(groups, []) if _s(g.get("name")) == GROUP), None)
    if group is not None:
        facts.lag = group.get("lag")
        facts.last_delivered = _s(group.get("last-delivered-id"))
    summary = _ok(summary, {}) or {}
    facts.pending = int(summary.get("pending") or 0)
    facts.oldest_pending_id = _s(summary.get("min"))
    facts.pending_entries = [
        (_s(e["consumer"]), e["time_since_delivered"] / 1000, _s(e["message_id"]))
        for e in _ok(entries, [])]
    facts.consumers = {_s(c["name"]): c["idle"] / 1000 for c in _ok(consumers, [])}
    facts.dead_letters = int(_ok(dead, 0))
    newest = _ok(newest_dead, [])
    facts.newest_dead_ms = _id_ms(_s(newest[0][0])) if newest else 0
    facts.deferred = int(_ok(deferred, 0))
    breakers, minutes = rest[:len(FAMILIES)], rest[len(FAMILIES):]
    facts.breakers = {f: decode_hash(_ok(b, {}))
                      for f, b in zip(FAMILIES, breakers, strict=True)}
    for bucket in minutes:
        for reason, count in int_hash(_ok(bucket, {})).items():
            facts.recent_restarts[reason] = facts.recent_restarts.get(reason, 0) + count


def _local_consumers(settings: Settings) -> list[str]:
    """This host's pool children, as worker.py names them."""
    return [consumer_name(settings, n) for n in range(max(1, settings.worker_processes))]


def _queue_second(pipe: redis.client.Pipeline, facts: Facts, names: list[str]) -> None:
    pipe.mget([heartbeat_key(n) for n in names])
    pipe.xrange(STREAM, min=f"({facts.last_delivered or '0-0'}", count=1)


def _parse_second(replies: list, facts: Facts, names: list[str]) -> None:
    beats, waiting = replies
    for name, raw in zip(names, _ok(beats, []) or [], strict=False):
        if raw:
            try:
                facts.heartbeats[name] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                facts.heartbeats[name] = {}
    waiting = _ok(waiting, [])
    facts.oldest_waiting_ms = _id_ms(_s(waiting[0][0])) if waiting else 0


def _names(facts: Facts, settings: Settings) -> list[str]:
    return sorted(set(facts.consumers) | set(_local_consumers(settings)))


def _describe(exc: Exception, settings: Settings) -> str:
    return f"cannot read Redis at {settings.effective_redis_url}: {exc}"


def gather(client: redis.Redis, settings: Settings) -> Facts:
    """The facts, read with a blocking client (the CLI)."""
    facts = Facts(now=time.time())
    try:
        started = time.perf_counter()
        client.ping()
        facts.latency_s = time.perf_counter() - started
        with client.pipeline(transaction=False) as pipe:
            _queue_first(pipe, facts.now)
            _parse_first(pipe.execute(raise_on_error=False), facts)
        names = _names(facts, settings)
        with client.pipeline(transaction=False) as pipe:
            _queue_second(pipe, facts, names)
            _parse_second(pipe.execute(raise_on_error=False), facts, names)
    except (*REDIS_DOWN, redis.RedisError) as exc:
        facts.error = _describe(exc, settings)
    return facts


async def gather_async(client: redis.asyncio.Redis, settings: Settings) -> Facts:
    """The same facts with the api's asyncio client."""
    facts = Facts(now=time.time())
    try:
        started = time.perf_counter()
        await client.ping()
        facts.latency_s = time.perf_counter() - started
        async with client.pipeline(transaction=False) as pipe:
            _queue_first(pipe, facts.now)
            _parse_first(await pipe.execute(raise_on_error=False), facts)
        names = _names(facts, settings)
        async with client.pipeline(transaction=False) as pipe:
            _queue_second(pipe, facts, names)
            _parse_second(await pipe.execute(raise_on_error=False), facts, names)
    except (*REDIS_DOWN, redis.RedisError) as exc:
        facts.error = _describe(exc, settings)
    return facts


# --- workers as the facts show them -----------------------------------------------------
@dataclass(frozen=True)
class Worker:
    name: str
    heartbeat: dict | None
    job_s: float | None  # how long its pending entry has been delivered to it

    @property
    def busy(self) -> bool:
        return self.job_s is not None or bool(self.heartbeat and self.heartbeat.get("busy"))

    def live(self, settings: Settings) -> bool:
        # A child writes its heartbeat between jobs; during a job, its pending entry (the
        # master kills it at JOB_TIMEOUT) is the sign of life.
        return self.heartbeat is not None or (
            self.job_s is not None and self.job_s <= settings.job_timeout + DEADLINE_GRACE)

    def overdue(self, settings: Settings) -> bool:
        return (self.heartbeat is not None and self.job_s is not None
                and self.job_s > settings.job_timeout + DEADLINE_GRACE)


def workers_view(facts: Facts, settings: Settings) -> dict[str, Worker]:
    held: dict[str, float] = {}
    for consumer, idle, _entry in facts.pending_entries:
        held[consumer] = max(held.get(consumer, 0.0), idle)
    return {n: Worker(n, facts.heartbeats.get(n), held.get(n)) for n in _names(facts, settings)}


def stranded(facts: Facts, settings: Settings) -> list[tuple[str, float, str]]:
    """Pending entries whose consumer shows no sign of life: waiting to be taken over."""
    view = workers_view(facts, settings)
    return [(c, idle, e) for c, idle, e in facts.pending_entries
            if not view[c].live(settings) and idle > settings.job_timeout + DEADLINE_GRACE]


# --- the checks ---------------------------------------------------------------------------
def _no_redis(name: str, facts: Facts) -> Check:
    return Check(name, UNKNOWN, "cannot tell while Redis is unreachable")


def _pct_status(value: float, warn: float, crit: float) -> str:
    return CRITICAL if value >= crit else WARNING if value >= warn else OK


def check_redis(facts: Facts, settings: Settings) -> Check:
    if facts.error:
        return Check("redis", CRITICAL, facts.error, {"connected": False},
                     (Perf("redis_up", 0, "", "", "1:", "0", "1"),))
    info = facts.info
    used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    figures = {
        "connected": True, "latency_ms": round(facts.latency_s * 1000, 2),
        "used_memory": used, "maxmemory": limit, "version": info.get("redis_version"),
        "aof_enabled": bool(info.get("aof_enabled")),
        "aof_last_write_status": info.get("aof_last_write_status"),
        "rdb_last_bgsave_status": info.get("rdb_last_bgsave_status"),
        "maxmemory_policy": info.get("maxmemory_policy"),
        "connected_clients": info.get("connected_clients"),
        "uptime_s": info.get("uptime_in_seconds"),
    }
    problems: list[tuple[str, str]] = []
    memory_pct = 100.0 * used / limit if limit else 0.0
    if limit:
        figures["memory_percent"] = round(memory_pct, 1)
        level = _pct_status(memory_pct, settings.memory_warn, settings.memory_crit)
        if level != OK:
            problems.append((level, f"memory {memory_pct:.0f}% of maxmemory"))
    if info.get("aof_last_write_status", "ok") != "ok":
        problems.append((CRITICAL, "the last AOF write failed (disk full?): writes refused"))
    if info.get("rdb_last_bgsave_status", "ok") != "ok":
        problems.append((WARNING, "the last RDB save failed"))
    if not info.get("aof_enabled"):
        problems.append((WARNING, "AOF is off: a crash loses accepted jobs"))
    if info.get("maxmemory_policy", "noeviction") != "noeviction":
        problems.append((WARNING, f"maxmemory-policy {info['maxmemory_policy']} may evict jobs"))
    if facts.latency_s >= REDIS_LATENCY_WARN:
        level = CRITICAL if facts.latency_s >= REDIS_LATENCY_CRIT else WARNING
        problems.append((level, f"PING took {facts.latency_s * 1000:.0f} ms"))
    perf = (Perf("redis_up", 1, "", "", "1:", "0", "1"),
            Perf("redis_latency", round(facts.latency_s, 6), "s", f"{REDIS_LATENCY_WARN:g}",
                 f"{REDIS_LATENCY_CRIT:g}", "0"),
            Perf("redis_memory", used, "B", "", "", "0", str(limit) if limit else ""))
    base = f"PING {figures['latency_ms']} ms, {used / 1048576:.1f} MB used"
    return _verdict("redis", problems, base, figures, perf)


def _verdict(name: str, problems: list[tuple[str, str]], base: str, figures: dict,
             perf: tuple[Perf, ...]) -> Check:
    if not problems:
        return Check(name, OK, base, figures, perf)
    status = worst([level for level, _ in problems])
    return Check(name, status, "; ".join(text for _, text in problems) + f" ({base})",
                 figures, perf)


def check_workers(facts: Facts, settings: Settings) -> Check:
    if facts.error:
        return _no_redis("workers", facts)
    view = workers_view(facts, settings)
    mine = [view[n] for n in _local_consumers(settings)]
    expected = len(mine)
    live = sum(w.live(settings) for w in mine)
    everyone = [w for w in view.values() if w.live(settings)]
    busy = sum(w.busy for w in everyone)
    overdue = [w for w in view.values() if w.overdue(settings)]
    recent = facts.recent_restarts
    bad_restarts = {r: n for r, n in recent.items() if r in ABNORMAL_RESTARTS and n}
    figures = {"expected": expected, "live": live, "cluster_live": len(everyone),
               "busy": busy, "idle": len(everyone) - busy,
               "overdue": [{"consumer": w.name, "running_s": round(w.job_s, 1)} for w in overdue],
               "restarts": facts.restarts,
               f"restarts_last_{RESTART_WINDOW_MIN}m": recent}
    perf = (Perf("workers_live", live, "", f"{expected}:", "1:", "0", str(expected)),
            Perf("workers_busy", busy, "", "", "", "0"),
            Perf("worker_restarts", sum(facts.restarts.values()), "c"))
    base = f"{live}/{expected} children alive here, {busy} busy"
    if settings.role == "api":
        return Check("workers", OK, f"no workers on this host (ROLE=api); "
                                    f"{len(everyone)} alive elsewhere", figures, perf)
    problems: list[tuple[str, str]] = []
    if live == 0:
        problems.append((CRITICAL, f"no worker child alive (0/{expected} heartbeats): "
                                   "jobs are not processed"))
    elif live < expected:
        problems.append((WARNING, f"only {live}/{expected} worker children alive"))
    for w in overdue:
        problems.append((CRITICAL, f"{w.name} has run one job for {w.job_s:.0f} s, past "
                                   f"JOB_TIMEOUT={settings.job_timeout:g}: deadline not enforced"))
    if bad_restarts:
        listed = ", ".join(f"{r} x{n}" for r, n in sorted(bad_restarts.items()))
        problems.append((WARNING, f"children died in the last {RESTART_WINDOW_MIN} min: {listed}"))
    return _verdict("workers", problems, base, figures, perf)


def check_chores(facts: Facts, settings: Settings) -> Check:
    if facts.error:
        return _no_redis("chores", facts)
    bound = max(60.0, 10 * settings.chore_interval)
    last = float(facts.chores.get("last_sweep") or 0)
    age = facts.now - last if last else None
    figures = {"last_sweep": last or None, "age_s": round(age, 1) if age is not None else None,
               "swept_files": int(facts.chores.get("swept_files") or 0),
               "swept_bytes": int(facts.chores.get("swept_bytes") or 0), "bound_s": bound}
    perf = (Perf("chores_age", round(age, 1), "s", f"{bound:g}", "", "0"),) if age else ()
    if age is None:
        return Check("chores", WARNING, "the chores (spool sweep, stream trim) have never run: "
                                        "is any pool master running?", figures, perf)
    if age > bound:
        return Check("chores", WARNING, f"the last chores ran {age:.0f} s ago (bound {bound:g} s):"
                                        " no pool master is running them", figures, perf)
    return Check("chores", OK, f"last ran {age:.0f} s ago", figures, perf)


def check_queue(facts: Facts, settings: Settings) -> Check:
    if facts.error:
        return _no_redis("queue", facts)
    now_ms = facts.now * 1000
    oldest_pending = (now_ms - _id_ms(facts.oldest_pending_id)) / 1000 \
        if facts.oldest_pending_id else 0.0
    oldest_waiting = (now_ms - facts.oldest_waiting_ms) / 1000 if facts.oldest_waiting_ms else 0.0
    lost = stranded(facts, settings)
    figures = {"depth": facts.depth, "max_depth": settings.max_queue_depth,
               "stream_length": facts.stream_length, "pending": facts.pending,
               "lag": facts.lag, "oldest_pending_age_s": round(max(0.0, oldest_pending), 1),
               "oldest_waiting_age_s": round(max(0.0, oldest_waiting), 1),
               "dead_letters": facts.dead_letters, "deferred": facts.deferred,
               "stranded": len(lost)}
    limit = settings.max_queue_depth
    warn_at = int(limit * 0.8)
    perf = (Perf("queue_depth", facts.depth, "", str(warn_at) if limit else "",
                 str(limit - 1) if limit else "", "0", str(limit) if limit else ""),
            Perf("queue_pending", facts.pending, "", "", "", "0"),
            Perf("queue_lag", facts.lag or 0, "", "", "", "0"),
            Perf("queue_oldest_pending", round(max(0.0, oldest_pending), 1), "s", "", "", "0"),
            Perf("dead_letters", facts.dead_letters, "", "", "", "0"))
    problems: list[tuple[str, str]] = []
    if limit and facts.depth >= limit:
        problems.append((CRITICAL, f"queue full ({facts.depth}/{limit}): uploads get 503"))
    elif limit and facts.depth >= warn_at:
        problems.append((WARNING, f"queue {facts.depth}/{limit}, near MAX_QUEUE_DEPTH"))
    if lost:
        problems.append((WARNING, f"{len(lost)} job(s) held by consumers with no sign of life for"
                                  f" up to {max(i for _, i, _ in lost):.0f} s; a live child "
                                  f"takes them after {settings.effective_claim_idle:g} s"))
    dead_age = facts.now - facts.newest_dead_ms / 1000 if facts.newest_dead_ms else None
    if dead_age is not None and dead_age < DEAD_LETTER_RECENT:
        problems.append((WARNING, f"{facts.dead_letters} dead letter(s), the newest "
                                  f"{dead_age / 60:.0f} min ago"))
    base = f"depth {facts.depth}, {facts.pending} pending, {facts.dead_letters} dead letters"
    return _verdict("queue", problems, base, figures, perf)


def check_breaker(facts: Facts, settings: Settings) -> Check:
    if facts.error:
        return _no_redis("breaker", facts)
    states = {f: b.get("state") or "closed" for f, b in facts.breakers.items()}
    opened = sorted(f for f, s in states.items() if s == "open")
    trial = sorted(f for f, s in states.items() if s == "half_open")
    figures = {"states": states, "open": opened, "half_open": trial, "families": {
        f: {"state": states[f],
            "consecutive_failures": int(b.get("consecutive_failures") or 0),
            "total_failures": int(b.get("total_failures") or 0),
            "times_opened": int(b.get("times_opened") or 0),
            "opened_at": float(b["opened_at"]) if b.get("opened_at") else None}
        for f, b in facts.breakers.items()}}
    total = len(states)
    perf = (Perf("breakers_open", len(opened), "", "0", str(total - 1), "0", str(total)),)
    if opened:
        reopen = {f: float(facts.breakers[f].get("opened_at") or 0)
                  + settings.circuit_breaker_recovery_timeout - facts.now for f in opened}
        text = ", ".join(f"{f} (trial in {max(0, r):.0f} s)" for f, r in reopen.items())
        status = CRITICAL if len(opened) == total else WARNING
        return Check("breaker", status, f"open: {text}; their jobs wait in the queue",
                     figures, perf)
    note = f"; half-open (on trial): {', '.join(trial)}" if trial else ""
    return Check("breaker", OK, f"all {total} closed{note}" if not trial
                 else f"none open{note}", figures, perf)


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
        level = worst([_pct_status(pct, settings.disk_warn, settings.disk_crit),
                       _pct_status(inodes, settings.disk_warn, settings.disk_crit)])
        if level != OK:
            problems.append((level, f"{label} ({where}) {pct:.0f}% full, inodes {inodes:.0f}%"))
    base = ", ".join(f"{k} {v['percent']:.0f}%" for k, v in figures.items())
    return _verdict("disk", problems, base, figures, tuple(perf))


def check_memory(settings: Settings) -> Check:
    mem = psutil.virtual_memory()
    figures = {"percent": mem.percent, "total": mem.total, "available": mem.available}
    perf = (Perf("memory", mem.percent, "%", f"{settings.memory_warn:g}",
                 f"{settings.memory_crit:g}", "0", "100"),)
    status = _pct_status(mem.percent, settings.memory_warn, settings.memory_crit)
    text = f"{mem.percent:.0f}% used, {mem.available / 1048576:.0f} MB available"
    return Check("memory", status, text, figures, perf)


def check_cpu(settings: Settings, percent: float) -> Check:
    load = os.getloadavg()
    figures = {"percent": percent, "load_average": [round(x, 2) for x in load],
               "cpus": os.cpu_count()}
    perf = (Perf("cpu", percent, "%", f"{settings.cpu_warn:g}", f"{settings.cpu_crit:g}",
                 "0", "100"), Perf("load1", round(load[0], 2), "", "", "", "0"))
    status = _pct_status(percent, settings.cpu_warn, settings.cpu_crit)
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
    return _verdict("supervisor", problems, base, {"programs": states}, ())


# --- running them -------------------------------------------------------------------------
def _guarded(name: str, run: Callable[[], Check]) -> Check:
    try:
        return run()
    except Exception as exc:  # one broken check must not hide the others
        return Check(name, UNKNOWN, f"the check itself failed: {type(exc).__name__}: {exc}")


def _local(name: str, settings: Settings, cpu: float | None) -> Callable[[], Check] | None:
    return {
        "api": lambda: check_api(settings),
        "disk": lambda: check_disk(settings),
        "memory": lambda: check_memory(settings),
        "cpu": lambda: check_cpu(settings, cpu if cpu is not None else 0.0),
        "tempfiles": lambda: check_tempfiles(settings),
        "supervisor": lambda: check_supervisor(settings),
    }.get(name)


REDIS_CHECKS: dict[str, Callable[[Facts, Settings], Check]] = {
    "redis": check_redis, "workers": check_workers, "chores": check_chores,
    "queue": check_queue, "breaker": check_breaker,
}


def judge(components: list[str], settings: Settings, facts: Facts | None,
          local: dict[str, Check]) -> list[Check]:
    """The checks in `components` order, from facts already read."""
    out = []
    for name in components:
        if name in REDIS_CHECKS:
            out.append(_guarded(name, lambda n=name: REDIS_CHECKS[n](facts, settings)))
        else:
            out.append(local[name])
    return out


def run_checks(settings: Settings, components: list[str] | None = None) -> list[Check]:
    """Every requested check, blocking (the CLI and healthcheck.sh)."""
    components = list(components or COMPONENTS)
    facts = None
    if NEEDS_REDIS & set(components):
        client = connect(settings, fast_fail=True)
        try:
            facts = gather(client, settings)
        finally:
            client.close()
    cpu = psutil.cpu_percent(interval=1.0) if "cpu" in components else None
    local = {n: _guarded(n, _local(n, settings, cpu)) for n in components
             if n not in REDIS_CHECKS}
    return judge(components, settings, facts, local)


async def run_checks_async(settings: Settings, client: redis.asyncio.Redis,
                           components: list[str], cpu: float,
                           api: Check | None = None) -> tuple[list[Check], Facts]:
    """The same checks inside the api: Redis through its client, the rest in a thread."""
    facts = await gather_async(client, settings)
    local_names = [n for n in components if n not in REDIS_CHECKS and n != "api"]

    def run_local() -> dict[str, Check]:
        return {n: _guarded(n, _local(n, settings, cpu)) for n in local_names}

    local = await asyncio.to_thread(run_local)
    if "api" in components:
        local["api"] = api or Check("api", OK, "this process answers")
    return judge(components, settings, facts, local), facts


# --- the monitoring-plugins output ----------------------------------------------------------
def render(checks: list[Check]) -> tuple[str, int]:
    """`TEXTRACTD STATUS - summary | perfdata`, then one line per problem; and the exit code."""
    status = worst([c.status for c in checks])
    problems = sorted((c for c in checks if c.status != OK),
                      key=lambda c: -SEVERITY[c.status])
    if problems:
        summary = ", ".join(f"{c.name} {c.status.upper()}" for c in problems)
        summary += f" ({len(problems)} of {len(checks)} checks)"
    else:
        summary = f"all {len(checks)} checks OK: " + "; ".join(
            f"{c.name} {c.message}" for c in checks if c.name in ("workers", "queue"))
        summary = summary.rstrip(": ")
    perf = " ".join(str(p) for c in checks for p in c.perf)
    lines = [f"TEXTRACTD {status.upper()} - {summary}" + (f" | {perf}" if perf else "")]
    lines += [problem_line(c) for c in problems]
    return "\n".join(lines), EXIT_CODES[status]


def problem_line(check: Check) -> str:
    return f"{check.status.upper()} {check.name}: {check.message}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit 2, which means CRITICAL
        raise ValueError(message)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="python -m daemon.health",
                     description="Check textractd's components; exit 0 OK, 1 WARNING, "
                                 "2 CRITICAL, 3 UNKNOWN.")
    parser.add_argument("components", nargs="*", metavar="COMPONENT",
                        help=f"{', '.join(COMPONENTS)} or all (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead")
    parser.add_argument("--problems", action="store_true",
                        help="print only the problem lines, nothing when all is OK (cron)")
    args = parser.parse_args(argv)
    names = [n.lower() for n in args.components] or ["all"]
    unknown = sorted(set(names) - {*COMPONENTS, "all"})
    if unknown:
        raise ValueError(f"unknown component {', '.join(unknown)}; choose from "
                         f"{', '.join(COMPONENTS)} or all")
    args.components = list(COMPONENTS) if "all" in names else list(dict.fromkeys(names))
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(sys.argv[1:] if argv is None else argv)
        checks = run_checks(Settings.from_env(), args.components)
    except (ValueError, ConfigError) as exc:
        print(f"TEXTRACTD UNKNOWN - {exc}")
        return EXIT_CODES[UNKNOWN]
    except Exception as exc:  # whatever breaks, the answer is UNKNOWN
        print(f"TEXTRACTD UNKNOWN - the health check failed: {type(exc).__name__}: {exc}")
        return EXIT_CODES[UNKNOWN]
    text, code = render(checks)
    if args.json:
        status = worst([c.status for c in checks])
        print(orjson.dumps({"status": status, "exit_code": code,
                            "checks": {c.name: c.as_dict() for c in checks}},
                           option=orjson.OPT_INDENT_2).decode())
    elif args.problems:
        if code:
            print(text.partition("\n")[2])
    else:
        print(text)
    return code

