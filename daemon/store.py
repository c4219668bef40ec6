"""The Redis side of textractd: key names, the connection, and every job operation.

One stream (`textractd:jobs`) with one consumer group (`workers`) carries job ids; each
job has a record hash, a payload string (the document bytes, so a worker on any host can
take it), a text string once done, and an attempt history list. A job whose upload gave
a callback_url gets a delivery once it ends: a hash, and its id in a sorted set of due
deliveries that the pool's sender reads. Every step that touches more than one key is a
script in `daemon.lua` (or a MULTI), so it is atomic.
"""

from __future__ import annotations

import enum
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple, cast, overload

import orjson
import redis
import redis.asyncio as aredis
from redis.exceptions import NoScriptError, ResponseError

from daemon import lua
from daemon.breaker import Outcome
from daemon.config import Settings
from daemon.connection import round_trip, round_trip_async
from daemon.errors import PoisonDocument, QueueFull, ReplicationTimeout

# --- names: the only place they are spelled -------------------------------------------
PREFIX = "textractd"
STREAM = f"{PREFIX}:jobs"
GROUP = "workers"
DEAD_LETTERS = f"{PREFIX}:dead"
DEFERRED = f"{PREFIX}:deferred"
DEPTH = f"{PREFIX}:depth"
DONE_CHANNEL = f"{PREFIX}:done"
# A result whose text is at most this long (bytes) rides in its done message: the api
# answers a waiting client from the message, with no read back (one round trip less).
DONE_MESSAGE_TEXT_MAX = 32 * 1024
JOB_COUNTERS = f"{PREFIX}:metrics:jobs"  # finished, done, failed:<code>
CHORES = f"{PREFIX}:chores"  # the master's last sweep: when, files, bytes
RESTARTS = f"{PREFIX}:metrics:restarts"  # child exits by reason
RESTARTS_BY_MINUTE = f"{PREFIX}:metrics:restarts:minute"  # + ":<epoch minute>"
RESTARTS_BY_MINUTE_TTL = 3600
REQUESTS = f"{PREFIX}:metrics:requests"
REQUEST_SECONDS = f"{PREFIX}:metrics:request_seconds"
EXTRACT_SECONDS = f"{PREFIX}:metrics:extract_seconds"
VOLUME = f"{PREFIX}:metrics:volume"
# Poison documents: sha256 -> expiry (a sorted set, so "quarantined now" and the count
# are one call), their details beside it, and the deaths counted per sha256 so far.
QUARANTINE = f"{PREFIX}:quarantine"
QUARANTINE_DETAILS = f"{PREFIX}:quarantine:details"
DEATHS_PREFIX = f"{PREFIX}:deaths:"
# Signed callbacks waiting to be sent: delivery id -> when it is due (a lease while sent).
CALLBACKS_DUE = f"{PREFIX}:callbacks:due"
CALLBACKS_GIVEN_UP = f"{PREFIX}:callbacks:given_up"  # the last few, for operators
CALLBACKS_GIVEN_UP_KEEP = 1000


class JobState(enum.StrEnum):
    """A job's life: queued -> processing -> done | failed (processing -> queued on a
    retry). The values are what Redis holds and what the api answers."""

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED})


def consumer_name(settings: Settings, slot_no: int) -> str:
    """The consumer name of a pool slot: its successive children share it, so each new
    child reads the entries its predecessor left pending first."""
    return f"{settings.consumer_prefix}-{slot_no}"


def master_consumer_name(settings: Settings) -> str:
    """The name the pool master acts under when it re-queues a dead child's job."""
    return f"{settings.consumer_prefix}-master"


def job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def payload_key(job_id: str) -> str:
    return f"{PREFIX}:payload:{job_id}"


def text_key(job_id: str) -> str:
    return f"{PREFIX}:text:{job_id}"


def history_key(job_id: str) -> str:
    return f"{PREFIX}:history:{job_id}"


def pages_key(job_id: str) -> str:
    """A scan's page tasks while they run (lua.FAN_OUT): total, next, done, and per page
    `attempts:<n>`, `error:<n>`, `message:<n>`, `text:<n>` (its OCR output, raw). Lives
    as long as the unfinished job: FINISH and DELETE remove it."""
    return f"{PREFIX}:pages:{job_id}"


# The result cache: one key per (document, options that change its text, tenant) naming
# the done job whose result serves it. The tenant goes last: the parts before it come
# from fixed vocabularies without colons, so no tenant name can make two keys meet.
CACHE_SHARED_SCOPE = "*"  # RESULT_CACHE_SHARED=1: one scope for every tenant


def cache_key(sha256: str, ext: str, method: str, scope: str) -> str:
    """The result cache's key for a document's bytes, its format and `method=`, and the
    tenant (or CACHE_SHARED_SCOPE) whose uploads may share the result."""
    return f"{PREFIX}:cache:{sha256}:{ext}:{method or '-'}:{scope}"


def deaths_key(sha256: str) -> str:
    return f"{DEATHS_PREFIX}{sha256}"


def callback_key(delivery_id: str) -> str:
    """One callback delivery: url, the job's final record (JSON), attempts, last error."""
    return f"{PREFIX}:callback:{delivery_id}"


def breaker_key(family: str) -> str:
    return f"{PREFIX}:breaker:{family}"


def rate_key(key_digest: str, window: int) -> str:
    return f"{PREFIX}:rate:{key_digest}:{window}"


def restarts_minute_key(epoch_minute: int) -> str:
    """Child exits by reason in one minute, so "recent" needs no state in the checker."""
    return f"{RESTARTS_BY_MINUTE}:{epoch_minute}"


def heartbeat_key(consumer: str) -> str:
    return f"{PREFIX}:heartbeat:{consumer}"


# --- the stream and its group ----------------------------------------------------
def ensure_group(client: redis.Redis) -> None:
    """Create the stream and its group; from id 0 so jobs queued first are not skipped."""
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def ensure_group_async(client: aredis.Redis) -> None:
    try:
        await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


# --- the job record as clients see it -------------------------------------------------
@overload
def _s(value: bytes | str) -> str: ...
@overload
def _s(value: None) -> None: ...
def _s(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def decode_record(raw: dict) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()}


def public_job(record: dict[str, str], text: str | None = None) -> dict:
    """The job JSON of every route: one shape whatever the state."""
    def num(name: str, kind: type = float) -> float | int | None:
        value = record.get(name)
        return kind(value) if value not in (None, "") else None

    job: dict[str, object] = {
        "id": record["id"],
        "state": record["state"],
        "filename": record.get("filename"),
        "format": record.get("ext"),
        "method": record.get("method") or None,
        "bytes": num("size", int),
        "attempts": num("attempts", int) or 0,
        "created_at": num("created_at"),
        "started_at": num("started_at"),
        "finished_at": num("finished_at"),
        "duration_ms": num("duration_ms"),
        "chars": num("chars", int),
        "request_id": record.get("request_id"),
        "cached": record.get("cached") == "1",
        "error": None,
    }
    if record["state"] == JobState.FAILED:
        job["error"] = {"code": record.get("error_code"), "message": record.get("error_message")}
    if record["state"] == JobState.DONE:
        job["metadata"] = orjson.loads(record.get("metadata") or "{}")
    if text is not None:
        job["text"] = text
    return job


def record_page_ends(record: dict[str, str]) -> list[int] | None:
    """Where each page of a done job's text ends (None: the job has no pages)."""
    raw = record.get("page_ends")
    return orjson.loads(raw) if raw else None


def parse_done_message(data: bytes) -> tuple[str, dict | None]:
    """(job id, the job as public_job shows it, if the message carries it) of a message on
    DONE_CHANNEL: the bare id, or the id, a newline and JSON {record, text} (lua.FINISH)."""
    job_id, _, carried = data.partition(b"\n")
    if not carried:
        return job_id.decode(), None
    try:
        body = orjson.loads(carried)
        return job_id.decode(), public_job(body["record"], body.get("text"))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return job_id.decode(), None  # the waiter reads the job itself


# --- the api's side (asyncio) ---------------------------------------------------------
SUBMIT_FULL, SUBMIT_QUEUED, SUBMIT_CACHED, SUBMIT_QUARANTINED = 0, 1, 2, 3  # lua.SUBMIT's


class Quarantined(Exception):
    """Raised by submit_many, storing nothing, when some of its documents are quarantined:
    the ids of their jobs, for the caller to refuse those and submit the rest."""

    def __init__(self, job_ids: list[str]) -> None:
        super().__init__(f"{len(job_ids)} quarantined documents")
        self.job_ids = job_ids


class Submitted(NamedTuple):
    job_id: str
    entry_id: str = ""  # the stream entry of a queued job
    cached: bool = False  # stored done at once, from the result cache


class _Script:
    """A job script as the workers run it, once or more per job: one EVALSHA through
    `round_trip` rather than redis-py's whole command path, and through redis-py's
    Script, which loads it, only when Redis no longer has it (restarted, or a
    failover)."""

    def __init__(self, client: redis.Redis | aredis.Redis, source: str) -> None:
        self.client = client
        self.script = client.register_script(source)

    def command(self, keys: list, args: list) -> tuple[Any, ...]:
        return ("EVALSHA", self.script.sha, len(keys), *keys, *args)

    def __call__(self, keys: list, args: list) -> Any:
        [reply] = round_trip(cast(redis.Redis, self.client), [self.command(keys, args)])
        if isinstance(reply, NoScriptError):
            return self.script(keys=keys, args=args)
        return _answered(reply)


class _AsyncScript(_Script):
    """The api's `_Script`: the same EVALSHA through `round_trip_async`."""

    async def __call__(self, keys: list, args: list) -> Any:
        [reply] = await round_trip_async(cast(aredis.Redis, self.client),
                                         [self.command(keys, args)])
        if isinstance(reply, NoScriptError):
            return await self.script(keys=keys, args=args)
        return _answered(reply)


def _answered(reply: Any) -> Any:
    """A script's reply, or the error Redis answered with, raised."""
    if isinstance(reply, Exception):
        raise reply
    return reply


class AsyncJobStore:
    def __init__(self, client: aredis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self._submit = _AsyncScript(client, lua.SUBMIT)
        self._submit_many = _AsyncScript(client, lua.SUBMIT_MANY)
        self._delete = client.register_script(lua.DELETE)

    async def submit(self, record: dict[str, str], payload: bytes | bytearray,
                     use_cache: bool = False) -> Submitted:
        """Store record + payload and XADD, atomically. Raises QueueFull, or
        PoisonDocument when the record's `sha256` is quarantined.

        With `use_cache`, a done job of the record's `cache_key` serves it instead: the
        job is stored done with a copy of that result, nothing is queued (`cached`)."""
        job_id = record["id"]
        flat = [x for pair in record.items() for x in pair]
        s = self.settings
        sha256 = record.get("sha256", "")
        status, value = await self._submit(
            keys=[job_key(job_id), payload_key(job_id), STREAM, DEPTH, text_key(job_id),
                  JOB_COUNTERS, QUARANTINE],
            args=[s.max_queue_depth, job_id, payload, record["family"],
                  record.get("cache_key", "") if use_cache else "", time.time(),
                  s.result_ttl, job_key(""), text_key(""), sha256, *flat],
        )
        if status == SUBMIT_FULL:
            raise QueueFull(int(value))
        if status == SUBMIT_QUARANTINED:
            raise PoisonDocument(sha256)
        if status == SUBMIT_CACHED:
            return Submitted(job_id, cached=True)
        wanted = self.settings.redis_wait_for_replicas
        if wanted:
            # The stronger guarantee: the 202 waits until a replica has the job too.
            acked = await self.client.wait(wanted, 1000)
            if acked < wanted:
                raise ReplicationTimeout(job_id, acked, wanted)
        return Submitted(job_id, entry_id=_s(value))

    async def submit_many(self, jobs: list[tuple[dict, bytes | bytearray]]) -> list[str]:
        """Store every (record, payload) and XADD each, in one atomic call: all or none.

        Raises QueueFull when the queue has no room for them all, Quarantined (naming
        them) when some of the documents are quarantined."""
        keys: list[str] = [STREAM, DEPTH, QUARANTINE]
        args: list[bytes | bytearray | str | int | float] = [self.settings.max_queue_depth,
                                                             len(jobs), time.time()]
        for record, payload in jobs:
            keys += [job_key(record["id"]), payload_key(record["id"])]
            args += [record["id"], record["family"], record.get("sha256", ""), payload,
                     len(record), *(x for pair in record.items() for x in pair)]
        status, value = await self._submit_many(keys=keys, args=args)
        if status == SUBMIT_FULL:
            raise QueueFull(int(value))
        if status == SUBMIT_QUARANTINED:
            raise Quarantined([jobs[n - 1][0]["id"] for n in value])
        wanted = self.settings.redis_wait_for_replicas
        if wanted:
            acked = await self.client.wait(wanted, 1000)
            if acked < wanted:
                raise ReplicationTimeout(jobs[0][0]["id"], acked, wanted)
        return [_s(entry) for entry in value]

    async def get(self, job_id: str) -> dict | None:
        found = await self.read(job_id)
        return public_job(*found) if found else None

    async def read(self, job_id: str) -> tuple[dict[str, str], str | None] | None:
        """The job's record and its text (None before it is done), in one round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(job_key(job_id))
            pipe.get(text_key(job_id))
            raw, text = await pipe.execute()
        if not raw:
            return None
        return decode_record(raw), text.decode("utf-8", "replace") if text is not None else None

    async def delete(self, job_id: str) -> bool:
        keys = [job_key(job_id), payload_key(job_id), text_key(job_id), DEPTH,
                history_key(job_id), pages_key(job_id)]
        return bool(await self._delete(keys=keys, args=[DONE_CHANNEL, job_id]))

    async def quarantine_count(self) -> int:
        return int(await self.client.zcount(QUARANTINE, f"({time.time()}", "+inf"))

    async def quarantine_entries(self) -> list[dict]:
        return _entries(await self.client.zrangebyscore(QUARANTINE, f"({time.time()}", "+inf"),
                        await self.client.hgetall(QUARANTINE_DETAILS))

    async def lift_quarantine(self, sha256: str) -> bool:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(QUARANTINE, sha256)
            pipe.hdel(QUARANTINE_DETAILS, sha256)
            pipe.delete(deaths_key(sha256))
            removed, _, _ = await pipe.execute()
        return bool(removed)


# --- poison documents, for the operator's CLI (blocking) ------------------------------
def quarantine_entries(client: redis.Redis) -> list[dict]:
    """The documents quarantined now, oldest first, with what is known of each."""
    return _entries(client.zrangebyscore(QUARANTINE, f"({time.time()}", "+inf"),
                    client.hgetall(QUARANTINE_DETAILS))


def lift_quarantine(client: redis.Redis, sha256: str) -> bool:
    """Let uploads of `sha256` through again (and forget its deaths); False if it was not
    quarantined."""
    pipe = client.pipeline(transaction=True)
    pipe.zrem(QUARANTINE, sha256)
    pipe.hdel(QUARANTINE_DETAILS, sha256)
    pipe.delete(deaths_key(sha256))
    removed, _, _ = pipe.execute()
    return bool(removed)


def _entries(members: list, details: dict) -> list[dict]:
    found = []
    for member in members:
        raw = details.get(member)
        try:
            entry = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            entry = {}
        found.append({**entry, "sha256": _s(member)})
    return found


# --- the workers' side (blocking) -----------------------------------------------------
@dataclass(frozen=True)
class Delivery:
    entry_id: str
    job_id: str
    family: str
    page: int = 0  # a page task of a fanned-out scan (lua.FAN_OUT); 0: the job itself

    @classmethod
    def from_entries(cls, entries: list) -> list[Delivery]:
        # An entry whose message was trimmed or deleted comes back without fields.
        return [cls(_s(eid), _s(f[b"job"]), _s(f.get(b"family", b"python")),
                    int(f.get(b"page", 0)))
                for eid, f in entries if f]


@dataclass(frozen=True)
class Begun:
    verdict: str  # run | gone | final | wait | exhausted | assemble (a page task)
    attempts: int = 0
    payload: bytes = b""
    reopen_at: float = 0.0
    created_at: float = 0.0
    error_code: str = ""  # the last attempt's, when the verdict is "exhausted"
    error_message: str = ""
    breaker_transition: str = ""  # "open" when this call moved OPEN -> HALF_OPEN
    ext: str = ""
    method: str = ""
    request_id: str = ""
    tenant: str = ""
    # the payload's hash, as the api computed it at upload (the record's `sha256`)
    sha256: str = ""
    page: int = 0  # a page task's page (lua.begin_page)
    pages: int = 0  # a page task's: the scan's pages in all
    job_started_at: float = 0.0  # a page task's: when the scan's job began
    job_attempts: int = 0  # a page task's: the scan's job's deliveries

    @classmethod
    def from_reply(cls, reply: list) -> Begun:
        """What lua.begin_job or lua.begin_page answered."""
        verdict = _s(reply[0])
        if verdict in ("run", "assemble"):
            ext, method, request_id, tenant, sha256 = (_s(x) for x in reply[4:9])
            return cls(verdict, int(reply[1]), reply[2], breaker_transition=_s(reply[3]),
                       ext=ext, method=method, request_id=request_id, tenant=tenant,
                       sha256=sha256,
                       page=int(reply[9]) if len(reply) > 9 else 0,
                       pages=int(reply[10]) if len(reply) > 10 else 0,
                       job_started_at=float(reply[11]) if len(reply) > 11 else 0.0,
                       job_attempts=int(reply[12]) if len(reply) > 12 else 0)
        if verdict == "wait":
            return cls("wait", reopen_at=float(reply[1]), created_at=float(reply[2]))
        if verdict == "exhausted":
            return cls("exhausted", int(reply[1]), error_code=_s(reply[2]),
                       error_message=_s(reply[3]))
        return cls(verdict)


class Settled(NamedTuple):
    """What FINISH or RETRY did: whether this call wrote the job's outcome (False: it was
    already final, or this delivery was already acknowledged), and the breaker move it
    made, as the states before and after ("" when the breaker was not touched)."""

    written: bool
    breaker_from: str
    breaker_to: str
    quarantined: bool = False  # RETRY of a death: the document is quarantined now

    @classmethod
    def from_reply(cls, reply: list) -> Settled:
        return cls(bool(reply[0]), _s(reply[1]), _s(reply[2]),
                   len(reply) > 3 and bool(reply[3]))


class ScriptCall(NamedTuple):
    """One script's KEYS and ARGV, built once, sent alone or in a pipeline."""

    keys: list[str]
    args: list


class PageStored(NamedTuple):
    """What FINISH_PAGE did: whether it counted the page (False: the job had ended), and
    whether every page is in now, so that this delivery is the one to end the job."""

    stored: bool
    last: bool
    done: int  # the scan's pages stored so far


class JobStore:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self._begin = _Script(client, lua.BEGIN)
        self._begin_page = _Script(client, lua.BEGIN_PAGE)
        self._take = _Script(client, lua.TAKE)
        self._fan_out = _Script(client, lua.FAN_OUT)
        self._finish_page = _Script(client, lua.FINISH_PAGE)
        self._finish = _Script(client, lua.FINISH)
        self._retry = _Script(client, lua.RETRY)
        self._promote = _Script(client, lua.PROMOTE)

    # reading ---------------------------------------------------------------------------
    def read(self, consumer: str, block_ms: int, *, own_pending: bool = False) -> list[Delivery]:
        """One entry: new (`>`), or this consumer's own pending entries (`0`)."""
        while True:
            reply = self._in_group(
                self.client.xreadgroup, GROUP, consumer,
                {STREAM: "0" if own_pending else ">"}, count=1,
                block=None if own_pending else block_ms)
            entries = [e for _stream, batch in reply or [] for e in batch]
            if not (own_pending and entries and not entries[0][1]):
                return Delivery.from_entries(entries)
            # A pending entry whose message was trimmed or deleted has no job to run, and
            # it would hide the pending entries behind it: acknowledge it and read on.
            self.client.xack(STREAM, GROUP, entries[0][0])

    def autoclaim(self, consumer: str, cursor: str) -> tuple[str, list[Delivery]]:
        """Take one entry idle longer than the claim bound (its consumer is gone)."""
        reply = self._in_group(
            self.client.xautoclaim, STREAM, GROUP, consumer,
            int(self.settings.effective_claim_idle * 1000), start_id=cursor, count=1)
        return _s(reply[0]), Delivery.from_entries(reply[1])

    def _in_group(self, command, *args, **kwargs):
        """Run a group command; if the group is missing, create it and run it again.

        The group can vanish under a running pool: a failover to a replica that had not
        yet received it, or a Redis restarted without its AOF."""
        try:
            return command(*args, **kwargs)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            ensure_group(self.client)
            return command(*args, **kwargs)

    # one job's life --------------------------------------------------------------------
    def begin(self, delivery: Delivery, consumer: str) -> Begun:
        s, job_id = self.settings, delivery.job_id
        if delivery.page:
            return Begun.from_reply(self._begin_page(
                keys=[job_key(job_id), pages_key(job_id), payload_key(job_id)],
                args=[consumer, time.time(), s.max_attempts, delivery.page]))
        reply = self._begin(
            keys=[job_key(job_id), payload_key(job_id), breaker_key(delivery.family),
                  history_key(job_id), QUARANTINE],
            args=[consumer, time.time(), s.max_attempts, s.circuit_breaker_recovery_timeout])
        return Begun.from_reply(reply)

    def take(self, consumer: str) -> tuple[Delivery, Begun] | None:
        """The next new entry, begun in the same call; None when none is waiting."""
        call = self._take_call(consumer)
        return self._taken(self._in_group(self._take, keys=call.keys, args=call.args))

    def _take_call(self, consumer: str) -> ScriptCall:
        s = self.settings
        return ScriptCall([STREAM, QUARANTINE],
                          [GROUP, consumer, time.time(), s.max_attempts,
                           s.circuit_breaker_recovery_timeout, job_key(""), payload_key(""),
                           breaker_key(""), history_key(""), pages_key("")])

    @staticmethod
    def _taken(reply: list) -> tuple[Delivery, Begun] | None:
        if not reply:
            return None
        return (Delivery(_s(reply[0]), _s(reply[1]), _s(reply[2]), int(reply[3])),
                Begun.from_reply(reply[4:]))

    def finish(self, delivery: Delivery, result: dict[str, object], *,
               outcome: Outcome = Outcome.NONE, dead: bool = False) -> Settled:
        """Write the result once, XACK, notify, queue the job's callback if it has one."""
        call = self._finish_call(delivery, result, outcome, dead)
        return Settled.from_reply(self._finish(keys=call.keys, args=call.args))

    def finish_and_take(self, delivery: Delivery, result: dict[str, object], consumer: str,
                        *, outcome: Outcome = Outcome.NONE
                        ) -> tuple[Settled, tuple[Delivery, Begun] | None]:
        """finish(), then take() for `consumer`, in one round trip: while work is queued
        a job costs the child one call to Redis, not two.

        Both EVALSHA in one round trip (a registered Script would first ask SCRIPT
        EXISTS, a round trip of its own). A script Redis no longer has (restarted, or a
        failover) is run again through its Script, which loads it; a take that failed
        otherwise (a group lost in a failover) is left to the next turn's take(), which
        mends the group."""
        finish_call, take_call = (self._finish_call(delivery, result, outcome, False),
                                  self._take_call(consumer))
        finished, taken = round_trip(self.client, [
            self._finish.command(finish_call.keys, finish_call.args),
            self._take.command(take_call.keys, take_call.args)])
        if isinstance(finished, NoScriptError):  # Redis lost it: loaded again, and run
            finished = self._finish.script(keys=finish_call.keys, args=finish_call.args)
        finished = _answered(finished)
        if isinstance(taken, ResponseError):
            return Settled.from_reply(finished), None
        if isinstance(taken, Exception):
            raise taken
        return Settled.from_reply(finished), self._taken(taken)

    def _finish_call(self, delivery: Delivery, result: dict[str, object], outcome: Outcome,
                     dead: bool) -> ScriptCall:
        s, job_id = self.settings, delivery.job_id
        callback_id = uuid.uuid4().hex  # used only if the job asked for a callback
        flat = [str(x) if not isinstance(x, bytes | str) else x
                for pair in result.items() for x in pair]
        return ScriptCall(
            [job_key(job_id), payload_key(job_id), text_key(job_id), STREAM, DEPTH,
             breaker_key(delivery.family), DEAD_LETTERS, history_key(job_id), JOB_COUNTERS,
             CALLBACKS_DUE, callback_key(callback_id), pages_key(job_id)],
            [GROUP, delivery.entry_id, s.result_ttl, time.time(), DONE_CHANNEL, job_id,
             outcome, s.circuit_breaker_failure_threshold,
             s.circuit_breaker_success_threshold, "1" if dead else "0",
             DONE_MESSAGE_TEXT_MAX, s.result_cache_ttl, callback_id, *flat])

    def retry(self, delivery: Delivery, *, consumer: str, error_code: str = "",
              error_message: str = "", ready_at: float = 0.0,
              outcome: Outcome = Outcome.NONE, died: bool = False) -> Settled:
        """Acknowledge this delivery and queue the job again (now, or at ready_at).
        `died`: the attempt killed its child, which counts toward quarantining the
        document once it has done so MAX_ATTEMPTS times."""
        s, job_id = self.settings, delivery.job_id
        reply = self._retry(
            keys=[job_key(job_id), STREAM, DEFERRED, breaker_key(delivery.family),
                  history_key(job_id), QUARANTINE, QUARANTINE_DETAILS, pages_key(job_id)],
            args=[GROUP, delivery.entry_id, job_id, time.time(), ready_at, outcome,
                  s.circuit_breaker_failure_threshold, s.circuit_breaker_success_threshold,
                  error_code, error_message[:500], consumer, delivery.family,
                  "1" if died else "0", s.max_attempts, s.quarantine_ttl, DEATHS_PREFIX,
                  delivery.page])
        return Settled.from_reply(reply)

    # a scan's page tasks (lua.FAN_OUT, FINISH_PAGE) --------------------------------------
    def fan_out(self, delivery: Delivery, pages: int, in_flight: int) -> int:
        """Cut the job into `pages` page tasks, `in_flight` of them queued at once, and
        acknowledge its entry; the pages queued (0: not this delivery's to do)."""
        reply = self._fan_out(keys=[job_key(delivery.job_id), pages_key(delivery.job_id),
                                    STREAM],
                              args=[GROUP, delivery.entry_id, delivery.job_id,
                                    delivery.family, pages, in_flight])
        return int(reply[1]) if int(reply[0]) else 0

    def finish_page(self, delivery: Delivery, output: bytes) -> PageStored:
        """Store a page task's OCR output and queue the scan's next page."""
        job_id = delivery.job_id
        reply = self._finish_page(keys=[job_key(job_id), pages_key(job_id), STREAM],
                                  args=[GROUP, delivery.entry_id, job_id, delivery.page,
                                        output])
        return PageStored(int(reply[0]) > 0, int(reply[0]) == 2,
                          int(reply[1]) if len(reply) > 1 else 0)

    def page_outputs(self, job_id: str, pages: int) -> list[bytes] | None:
        """Every page's OCR output in page order (None if one is missing: the job ended
        meanwhile)."""
        outputs = self.client.hmget(pages_key(job_id), [f"text:{n}" for n in range(1, pages + 1)])
        found = [out for out in outputs if isinstance(out, bytes)]
        return found if len(found) == pages else None

    def finished_since(self, job_id: str, since: float, consumer: str) -> bool:
        """Whether the job is final with its result written at `since` (time.time()) or
        later by the delivery `consumer` began last: whether that consumer's FINISH sent
        then landed, when its answer was never seen (a later FINISH of another consumer's
        delivery of the same job is that consumer's to log)."""
        state, finished_at, began = self.client.hmget(job_key(job_id), "state",
                                                      "finished_at", "consumer")
        return (_s(state) in FINAL_STATES and finished_at is not None
                and float(finished_at) >= since and _s(began) == consumer)

    def ack(self, delivery: Delivery) -> None:
        self.client.xack(STREAM, GROUP, delivery.entry_id)

    def promote_deferred(self, limit: int = 100) -> int:
        return int(self._promote(keys=[DEFERRED, STREAM], args=[time.time(), limit]))

    def trim_acknowledged(self) -> int:
        """Trim entries every consumer has acknowledged, never a pending or unread one.

        XTRIM ignores the pending list, so the bound is the older of the oldest pending
        entry and the first entry not yet delivered.
        """
        groups = self.client.xinfo_groups(STREAM)
        group = next((g for g in groups if _s(g["name"]) == GROUP), None)
        if group is None:
            return 0
        bound = _next_id(_s(group["last-delivered-id"]))
        summary = self.client.xpending(STREAM, GROUP)
        if summary["pending"]:
            bound = min(bound, _s(summary["min"]), key=_id_key)
        return int(self.client.xtrim(STREAM, minid=bound, approximate=False))


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _next_id(entry_id: str) -> str:
    ms, seq = _id_key(entry_id)
    return f"{ms}-{seq + 1}"


# --- dead letters: the operators' view and actions ----------------------------------------
DEAD_LETTER_ID_RE = r"^\d{1,19}-\d{1,19}$"  # a stream entry id: what names a dead letter
ENTRY_ID_MAX = 2**64 - 1  # each half of a stream entry id is an unsigned 64-bit number
DEAD_LETTER_SCAN = 200  # entries read per round trip while a filter skips some


def is_entry_id(value: str) -> bool:
    """Whether `value` is a stream entry id Redis takes (more digits are an error there)."""
    if not re.match(DEAD_LETTER_ID_RE, value):
        return False
    ms, _, seq = value.partition("-")
    return int(ms) <= ENTRY_ID_MAX and int(seq) <= ENTRY_ID_MAX


class ReplayRefused(Exception):
    """Raised when a dead letter cannot go back on the queue: `reason` says why."""

    def __init__(self, reason: str, job_id: str = "", sha256: str = "") -> None:
        super().__init__(reason)
        self.reason = reason  # gone | no_payload | busy | quarantined
        self.job_id = job_id
        self.sha256 = sha256  # the quarantined document's, for the operator to lift


def _stream_entries(reply: object) -> list[tuple[bytes, dict]]:
    """A stream range reply as a list (redis-py types the reply loosely)."""
    return list(reply or [])  # type: ignore[call-overload]  # a list of (id, fields) or None


def dead_letter_view(entry_id: bytes | str, fields: dict, *, full: bool = False) -> dict:
    """A dead letter as the api, the CLI and the dashboard show it: the failure in front,
    with `full`, the job's record and its attempt history as FINISH wrote them."""
    raw = decode_record(fields)
    try:
        record = orjson.loads(raw.get("record") or "{}")
    except orjson.JSONDecodeError:
        record = {}
    view = {
        "id": _s(entry_id),
        "job_id": raw.get("job"),
        "dead_at": int(_s(entry_id).partition("-")[0]) / 1000,
        "error": {"code": record.get("error_code"), "message": record.get("error_message")},
        "attempts": int(record.get("attempts") or 0),
        "filename": record.get("filename"),
        "format": record.get("ext"),
        "family": record.get("family"),
        "tenant": record.get("tenant"),
        "request_id": record.get("request_id"),
    }
    if full:
        try:
            history = orjson.loads(raw.get("history") or "[]")
        except orjson.JSONDecodeError:
            history = []
        view["record"] = record
        view["history"] = history
    return view


class DeadLetters:
    """List, read, replay and purge the dead-letter stream (asyncio: the api and the CLI)."""

    def __init__(self, client: aredis.Redis) -> None:
        self.client = client
        self._replay = client.register_script(lua.REPLAY_DEAD)
        self._purge = client.register_script(lua.PURGE_DEAD)

    async def count(self) -> int:
        return int(await self.client.xlen(DEAD_LETTERS))

    async def page(self, *, limit: int, before: str | None = None,
                   code: str | None = None) -> tuple[list[dict], str | None]:
        """Up to `limit` letters, newest first, older than `before`, of error `code`; and
        the cursor of the next page (None when this one reached the oldest)."""
        found: list[dict] = []
        if before == "0-0":
            return found, None  # nothing is older than the first possible id
        upper = f"({before}" if before else "+"
        while len(found) < limit:
            entries = _stream_entries(await self.client.xrevrange(
                DEAD_LETTERS, max=upper, min="-", count=DEAD_LETTER_SCAN if code else limit))
            for entry_id, fields in entries:
                view = dead_letter_view(entry_id, fields)
                if code is None or view["error"]["code"] == code:
                    found.append(view)
                    if len(found) == limit:
                        return found, view["id"]
                upper = f"({_s(entry_id)}"
            if len(entries) < (DEAD_LETTER_SCAN if code else limit):
                return found, None
        return found, found[-1]["id"] if found else None

    async def ids(self, code: str | None) -> list[str]:
        """Every letter of error `code` (every letter when None), oldest first."""
        out: list[str] = []
        lower = "-"
        while True:
            entries = _stream_entries(await self.client.xrange(DEAD_LETTERS, min=lower, max="+",
                                                        count=DEAD_LETTER_SCAN))
            for entry_id, fields in entries:
                if code is None or dead_letter_view(entry_id, fields)["error"]["code"] == code:
                    out.append(_s(entry_id))
                lower = f"({_s(entry_id)}"
            if len(entries) < DEAD_LETTER_SCAN:
                return out

    async def get(self, dead_id: str) -> dict | None:
        entries = _stream_entries(await self.client.xrange(DEAD_LETTERS, min=dead_id, max=dead_id))
        return dead_letter_view(*entries[0], full=True) if entries else None

    async def replay(self, dead_id: str, actor: str) -> str:
        """Queue the letter's job again; its id. Raises ReplayRefused."""
        reply = await self._replay(
            keys=[DEAD_LETTERS, STREAM, DEPTH, QUARANTINE],
            args=[dead_id, time.time(), actor, job_key(""), payload_key(""), history_key("")])
        if not int(reply[0]):
            raise ReplayRefused(*(_s(x) for x in reply[1:4]))
        return _s(reply[1])

    async def purge(self, dead_id: str) -> str | None:
        """Remove the letter and its payload; the job id, or None when there was none."""
        reply = await self._purge(keys=[DEAD_LETTERS],
                                  args=[dead_id, job_key(""), payload_key("")])
        return _s(reply[1]) if int(reply[0]) else None


# --- signed callbacks (the pool's sender) ---------------------------------------------
class DueCallback(NamedTuple):
    """A callback taken from the due set, leased to this sender until sent or rescheduled."""

    delivery_id: str
    url: str
    record: dict[str, str]  # the job's final record, as FINISH saw it
    attempts: int  # tries before this one


class CallbackQueue:
    """The due set and one hash per delivery, written by FINISH (lua.py), sent by the
    pool's sender: every change of a delivery is one atomic call."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._claim = client.register_script(lua.CLAIM_CALLBACKS)

    def claim(self, limit: int, lease: float) -> list[DueCallback]:
        reply = self._claim(keys=[CALLBACKS_DUE],
                            args=[time.time(), lease, limit, callback_key("")])
        return [DueCallback(_s(reply[i]), _s(reply[i + 1]),
                            decode_record(orjson.loads(reply[i + 2])), int(reply[i + 3]))
                for i in range(0, len(reply), 4)]

    def delivered(self, delivery_id: str) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(CALLBACKS_DUE, delivery_id)
            pipe.delete(callback_key(delivery_id))
            pipe.execute()

    def retry_at(self, delivery_id: str, due: float, attempts: int, error: str) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(callback_key(delivery_id),
                      mapping={"attempts": attempts, "last_error": error[:500]})
            pipe.zadd(CALLBACKS_DUE, {delivery_id: due})
            pipe.execute()

    def give_up(self, callback: DueCallback, attempts: int, error: str) -> None:
        """Stop trying; the last CALLBACKS_GIVEN_UP_KEEP given up stay listed for operators."""
        entry = orjson.dumps({"delivery_id": callback.delivery_id, "url": callback.url,
                              "job_id": callback.record.get("id"), "attempts": attempts,
                              "error": error[:500], "at": time.time()})
        with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(CALLBACKS_DUE, callback.delivery_id)
            pipe.delete(callback_key(callback.delivery_id))
            pipe.lpush(CALLBACKS_GIVEN_UP, entry)
            pipe.ltrim(CALLBACKS_GIVEN_UP, 0, CALLBACKS_GIVEN_UP_KEEP - 1)
            pipe.execute()
