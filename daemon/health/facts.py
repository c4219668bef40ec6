"""The facts the Redis-side checks judge, read in two pipelined round trips.

`gather` (the CLI's blocking client) and `gather_async` (the api's asyncio client) queue the
same commands and parse the same replies, so the CLI, `/health/detailed` and `/metrics` read
the same numbers the same way. `workers_view` and `stranded` read the workers out of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from daemon.config import Settings
from daemon.connection import REDIS_DOWN
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

FAMILIES = tuple(sorted({f.family for f in FORMATS.values()}))
PENDING_SAMPLE = 200  # oldest pending entries looked at one by one
RESTART_WINDOW_MIN = 15


def recent_minutes(now: float, count: int) -> list[int]:
    """The epoch minutes of the last `count`: restarts are counted per minute (reason ->
    count), so "recent" needs no state in the checker."""
    current = int(now // 60)
    return list(range(current - count + 1, current + 1))


def _s(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def id_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0] or 0)


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


# The blocking and the asyncio pipeline queue commands alike; only execute() differs.
Pipeline = redis.client.Pipeline | redis.asyncio.client.Pipeline


def _queue_first(pipe: Pipeline, now: float) -> None:
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


def _ok(value: Any, default: Any) -> Any:  # Any: redis-py's replies are untyped
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
    facts.newest_dead_ms = id_ms(_s(newest[0][0])) if newest else 0
    facts.deferred = int(_ok(deferred, 0))
    breakers, minutes = rest[:len(FAMILIES)], rest[len(FAMILIES):]
    facts.breakers = {f: decode_hash(_ok(b, {}))
                      for f, b in zip(FAMILIES, breakers, strict=True)}
    for bucket in minutes:
        for reason, count in int_hash(_ok(bucket, {})).items():
            facts.recent_restarts[reason] = facts.recent_restarts.get(reason, 0) + count


def local_consumers(settings: Settings) -> list[str]:
    """This host's pool children, named by the pool's own rule."""
    return [consumer_name(settings, n) for n in range(max(1, settings.worker_processes))]


def _queue_second(pipe: Pipeline, facts: Facts, names: list[str]) -> None:
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
    facts.oldest_waiting_ms = id_ms(_s(waiting[0][0])) if waiting else 0


def _names(facts: Facts, settings: Settings) -> list[str]:
    return sorted(set(facts.consumers) | set(local_consumers(settings)))


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


def oldest_waiting_age(facts: Facts) -> float:
    """Seconds the oldest job no consumer has read yet has waited; 0 when none waits."""
    if not facts.oldest_waiting_ms:
        return 0.0
    return max(0.0, facts.now - facts.oldest_waiting_ms / 1000)


# --- workers as the facts show them -----------------------------------------------------
def held_bound(settings: Settings) -> float:
    """How long a job may be held: the master kills at JOB_TIMEOUT; past DEADLINE_GRACE
    more it did not (it is wedged, or gone with its children)."""
    return settings.job_timeout + settings.deadline_grace


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
            self.job_s is not None and self.job_s <= held_bound(settings))

    def overdue(self, settings: Settings) -> bool:
        return (self.heartbeat is not None and self.job_s is not None
                and self.job_s > held_bound(settings))


def workers_view(facts: Facts, settings: Settings) -> dict[str, Worker]:
    held: dict[str, float] = {}
    for consumer, idle, _entry in facts.pending_entries:
        held[consumer] = max(held.get(consumer, 0.0), idle)
    return {n: Worker(n, facts.heartbeats.get(n), held.get(n)) for n in _names(facts, settings)}


def stranded(facts: Facts, settings: Settings) -> list[tuple[str, float, str]]:
    """Pending entries whose consumer shows no sign of life: waiting to be taken over."""
    view = workers_view(facts, settings)
    return [(c, idle, e) for c, idle, e in facts.pending_entries
            if not view[c].live(settings) and idle > held_bound(settings)]
