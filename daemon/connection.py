"""Connecting to Redis: URLs (redis, rediss, unix, redis+sentinel), retries, failover.

Every process gets its clients here: redis-py's own retry with exponential backoff,
timeouts and health checks, and with a Sentinel URL a connection that asks the sentinels
for the master again on every reconnect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, unquote

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelManagedConnection as AsyncSentinelConnection
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from daemon.config import ConfigError, Settings

# What a caller treats as "Redis is down": retried by redis-py first, then surfaced.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

# The oldest server textractd runs on: the code uses 7.0 commands and options (EXPIRE ...
# NX, XAUTOCLAIM dropping deleted entries). Older servers would fail job by job; refuse
# at start instead.
MIN_REDIS_VERSION = (7, 0)


class RedisTooOld(ConfigError):
    """Raised when the Redis server is older than MIN_REDIS_VERSION."""


def _checked_version(info: dict) -> str:
    version = str(info.get("redis_version", "unknown"))
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if len(numbers) < 2 or numbers < MIN_REDIS_VERSION:
        wanted = ".".join(map(str, MIN_REDIS_VERSION))
        raise RedisTooOld(f"the Redis server is version {version}; textractd needs Redis "
                          f">= {wanted} (it uses EXPIRE ... NX and XAUTOCLAIM): upgrade it")
    return version


def require_redis_version(client: redis.Redis) -> str:
    """The server's version (INFO server); RedisTooOld when it is below 7.0."""
    return _checked_version(client.info("server"))


async def require_redis_version_async(client: aredis.Redis) -> str:
    """The asyncio twin of `require_redis_version` (the api)."""
    return _checked_version(await client.info("server"))


# --- options -----------------------------------------------------------------------
def _connection_options(settings: Settings, fast_fail: bool, *,
                        asynchronous: bool = False) -> dict:
    # The api must answer 503 within about a second (5 retries: 0.05 + 0.1 + 0.2 + 0.25 +
    # 0.25 s); workers can afford a longer backoff (0.2 s doubling up to 2 s).
    backoff = ExponentialBackoff(cap=0.25, base=0.025) if fast_fail else ExponentialBackoff(
        cap=2.0, base=0.1)
    # The asyncio client needs the asyncio Retry: given the blocking one it awaits the
    # coroutine outside the retry loop, so nothing is ever retried.
    retry_class = AsyncRetry if asynchronous else Retry
    return {
        "retry": retry_class(backoff, settings.redis_max_retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": min(settings.redis_socket_timeout, 2.0),
        "health_check_interval": 15,
    }


SENTINEL_SCHEME = "redis+sentinel://"
SENTINEL_QUERY = {"sentinel_password": "password", "sentinel_username": "username"}


def _sentinel_target(url: str) -> tuple[list[tuple[str, int]], str, dict, dict] | None:
    """`redis+sentinel://[user:pass@]h1[:p1],h2[:p2]/service[/db][?sentinel_password=..]`.

    Returns the sentinels, the service name, the master's credentials and db, and the
    sentinels' own credentials (only when the query names them: sentinels usually have
    none, and AUTH to a server without a password is an error).
    """
    if not url.startswith(SENTINEL_SCHEME):
        return None
    rest, _, query = url.removeprefix(SENTINEL_SCHEME).partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hostlist = netloc.rpartition("@")
    hosts = [_host_port(hostport) for hostport in hostlist.split(",") if hostport]
    names = [p for p in path.split("/") if p]
    if not hosts or not names:
        raise ValueError(f"REDIS_URL for Sentinel needs {SENTINEL_SCHEME}host:port,.../"
                         "service_name")
    master: dict[str, object] = {}
    if userinfo:
        username, has_password, password = userinfo.partition(":")
        if username:
            master["username"] = unquote(username)
        if has_password:
            master["password"] = unquote(password)
    if len(names) > 1:
        master["db"] = int(names[1])
    sentinel: dict[str, object] = {}
    for name, values in parse_qs(query).items():
        if name not in SENTINEL_QUERY:
            raise ValueError(f"REDIS_URL: unknown Sentinel option {name!r} "
                             f"(known: {', '.join(SENTINEL_QUERY)})")
        sentinel[SENTINEL_QUERY[name]] = values[-1]
    return hosts, names[0], master, sentinel


def _host_port(hostport: str) -> tuple[str, int]:
    if hostport.startswith("["):  # [ipv6]:port
        host, _, port = hostport[1:].partition("]")
        return host, int(port.lstrip(":") or 26379)
    host, _, port = hostport.partition(":")
    return host, int(port or 26379)


def _sentinel_options(options: dict, credentials: dict) -> dict:
    # No retry per sentinel: discovery already moves on to the next sentinel, and redis-py's
    # default (10 retries with backoff) would stall every reconnect while one is down.
    return {"socket_timeout": options["socket_timeout"],
            "socket_connect_timeout": options["socket_connect_timeout"],
            "retry": type(options["retry"])(NoBackoff(), 0), **credentials}


class _MasterConnection(SentinelManagedConnection):
    """A Sentinel-managed connection that asks the sentinels again on every reconnect.

    redis-py (8.1) reconnects a dropped connection inside its command retry through the
    base class, which redials the address it had: the dead master. Each retry then fails
    until the whole command gives up (about 5 s for the workers), and only a connection
    taken fresh from the pool would find the new master. Going through `connect()` makes
    every retry ask the sentinels.
    """

    def send_packed_command(self, command: bytes | str | Iterable[bytes],
                            check_health: bool = True) -> None:
        if not self._sock:
            self.connect()
        super().send_packed_command(command, check_health)


# redis-py's own cut-off: a larger argument goes out as a chunk of its own, uncopied.
_COPY_AT_MOST = 6000


class _HiredisPacking:
    """Commands packed by hiredis, in C, as redis-py's blocking client already does: its
    asyncio connections pack each argument in Python, and SUBMIT carries the job record
    as some thirty arguments (the api's CPU per tiny job, A/B: about 0.03 ms less of
    0.57). Same bytes out, same DataError for an argument Redis cannot take.

    hiredis packs a command into one string, a copy of every argument: an upload's
    payload larger than redis-py's chunk size keeps redis-py's packing, which sends it
    as it is (32 uploads of 16 MB at once: api peak RSS 293 MB that way, 420 copied)."""

    _serializer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        if any(isinstance(arg, bytes | bytearray | memoryview) and len(arg) > _COPY_AT_MOST
               for arg in args):
            return super().pack_command(*args)  # type: ignore[misc]
        return self._serializer.pack(*args)


def _packing_with_hiredis(client: aredis.Redis) -> aredis.Redis:
    pool = client.connection_pool
    base = pool.connection_class
    if not issubclass(base, _HiredisPacking):
        pool.connection_class = type(base.__name__, (_HiredisPacking, base), {})
    return client


class _AsyncMasterConnection(_HiredisPacking, AsyncSentinelConnection):
    """The asyncio twin of `_MasterConnection` (the same redial in redis.asyncio)."""

    async def send_packed_command(self, command: bytes | str | Iterable[bytes],
                                  check_health: bool = True) -> None:
        if not self.is_connected:
            await self.connect()
        await super().send_packed_command(command, check_health)


def round_trip(client: redis.Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """`commands` sent together on one of the client's connections: each reply in order,
    or the ResponseError Redis answered it with (a NoScriptError is one).

    What redis-py's Pipeline(transaction=False).execute(raise_on_error=False) does, with
    the same connection (its Sentinel redial, health check and READONLY handling) and the
    same retry, but without its per-command bookkeeping: about 45 of the 80 us of CPU
    that a worker's FINISH-and-TAKE call cost in redis-py 8.1. Only for commands whose
    replies redis-py passes through unparsed (EVALSHA)."""
    pool = client.connection_pool
    connection = pool.get_connection()
    packed = connection.pack_commands(commands)

    def send_and_read() -> list[Any]:
        connection.send_packed_command(packed)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except ResponseError as exc:  # the others are still to be read
                replies.append(exc)
        return replies

    try:
        # A dropped connection is closed before the next try, as redis-py's own
        # failure handler does; the whole batch is then sent again.
        return connection.retry.call_with_retry(send_and_read,
                                                lambda _error: connection.disconnect())
    finally:
        pool.release(connection)


async def round_trip_async(client: aredis.Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """The asyncio twin of `round_trip` (the api's SUBMIT): the same replies, the same
    connection and retry as redis-py's own call, for less of its CPU (the api per tiny
    job, A/B: 0.545 -> 0.535 ms). A cancelled wait leaves no reply behind on a pooled
    connection: redis-py's connection closes itself when a send or a read is cut short."""
    pool = client.connection_pool
    connection = await pool.get_connection()
    packed = connection.pack_commands(commands)

    async def send_and_read() -> list[Any]:
        await connection.send_packed_command(packed)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:
                replies.append(exc)
        return replies

    async def closed(_error: Exception) -> None:
        await connection.disconnect()

    try:
        return await connection.retry.call_with_retry(send_and_read, closed)
    finally:
        await pool.release(connection)


def connect(settings: Settings, *, fast_fail: bool = False) -> redis.Redis:
    """A client with redis-py's own retry/backoff, timeouts and health checks.

    With a Sentinel URL every (re)connection asks the sentinels for the master, so a
    failover needs no restart: the retry reconnects to the promoted replica, and a
    connection still open to a demoted master turns its READONLY error into a reconnect
    (redis-py's SentinelManagedConnection).
    """
    options = _connection_options(settings, fast_fail)
    sentinel = _sentinel_target(settings.effective_redis_url)
    if sentinel:
        hosts, service, master, credentials = sentinel
        manager = Sentinel(hosts, sentinel_kwargs=_sentinel_options(options, credentials))
        return manager.master_for(service, connection_class=_MasterConnection, **options,
                                  **master)
    return redis.Redis.from_url(settings.effective_redis_url, **options)


def connect_async(settings: Settings, *, fast_fail: bool = True) -> aredis.Redis:
    """The asyncio twin of `connect` (the api), fast-failing by default: 503, not a hang."""
    options = _connection_options(settings, fast_fail, asynchronous=True)
    sentinel = _sentinel_target(settings.effective_redis_url)
    if sentinel:
        hosts, service, master, credentials = sentinel
        manager = AsyncSentinel(hosts, sentinel_kwargs=_sentinel_options(options, credentials))
        return manager.master_for(service, connection_class=_AsyncMasterConnection,
                                  **options, **master)
    return _packing_with_hiredis(aredis.Redis.from_url(settings.effective_redis_url,
                                                       **options))
