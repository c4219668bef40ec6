"""The component checks that judge the facts from Redis, and the verdict they return.

Every check returns a `Check` (ok / warning / critical / unknown, a one-line message,
figures and perfdata). The checks never talk to Redis themselves: they judge the `Facts`
that `daemon.health.facts` read, so one read serves every check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.config import Settings
from daemon.health.facts import (
    RESTART_WINDOW_MIN,
    Facts,
    id_ms,
    local_consumers,
    oldest_waiting_age,
    stranded,
    workers_view,
)

OK, WARNING, CRITICAL, UNKNOWN = "ok", "warning", "critical", "unknown"
EXIT_CODES = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}
# How bad, for the overall verdict: an UNKNOWN may hide a CRITICAL, so it outranks WARNING.
SEVERITY = {OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3}
ABNORMAL_RESTARTS = frozenset({"crashed", "killed", "boot-failed", "wedged"})
DEAD_LETTER_RECENT = 3600.0  # a dead letter newer than this is news worth a warning
REDIS_LATENCY_WARN, REDIS_LATENCY_CRIT = 0.1, 1.0


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


def _no_redis(name: str, facts: Facts) -> Check:
    return Check(name, UNKNOWN, "cannot tell while Redis is unreachable")


def pct_status(value: float, warn: float, crit: float) -> str:
    return CRITICAL if value >= crit else WARNING if value >= warn else OK


def verdict(name: str, problems: list[tuple[str, str]], base: str, figures: dict,
            perf: tuple[Perf, ...]) -> Check:
    if not problems:
        return Check(name, OK, base, figures, perf)
    status = worst([level for level, _ in problems])
    return Check(name, status, "; ".join(text for _, text in problems) + f" ({base})",
                 figures, perf)


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
        level = pct_status(memory_pct, settings.memory_warn, settings.memory_crit)
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
    return verdict("redis", problems, base, figures, perf)


def check_workers(facts: Facts, settings: Settings) -> Check:
    if facts.error:
        return _no_redis("workers", facts)
    view = workers_view(facts, settings)
    mine = [view[n] for n in local_consumers(settings)]
    expected = len(mine)
    live = sum(w.live(settings) for w in mine)
    everyone = [w for w in view.values() if w.live(settings)]
    busy = sum(w.busy for w in everyone)
    overdue = [w for w in view.values() if w.overdue(settings)]
    recent = facts.recent_restarts
    bad_restarts = {r: n for r, n in recent.items() if r in ABNORMAL_RESTARTS and n}
    figures = {"expected": expected, "live": live, "cluster_live": len(everyone),
               "busy": busy, "idle": len(everyone) - busy,
               "overdue": [{"consumer": w.name, "running_s": round(w.job_s or 0.0, 1)}
                           for w in overdue],
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
    return verdict("workers", problems, base, figures, perf)


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
    oldest_pending = (now_ms - id_ms(facts.oldest_pending_id)) / 1000 \
        if facts.oldest_pending_id else 0.0
    oldest_waiting = oldest_waiting_age(facts)
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
    return verdict("queue", problems, base, figures, perf)


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
