"""The callback sender: a process of the workers program that POSTs each finished job's
signed JSON to the callback_url its upload gave.

FINISH (daemon.lua) queued the delivery in Redis in the step that ended the job; this
process takes due deliveries under a lease (so one that dies mid-send leaves it due
again: at least once), sends a few at a time on threads, and on failure queues the next
try after an exponential backoff, until CALLBACK_MAX_ATTEMPTS. It runs apart from the
pool master (forked by its chores), so a receiver that hangs never delays a deadline or
a respawn. Only the standard library speaks HTTP here: the pool never loads aiohttp.

Against server-side request forgery, each send resolves the host, checks every address
it got against CALLBACK_ALLOW, and connects to the address it checked (a DNS answer that
changes between check and connect cannot move it); redirects are failures, not followed;
connect and read have short timeouts.
"""

from __future__ import annotations

import http.client
import os
import random
import signal
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import orjson
import structlog

from daemon import __version__, webhooks
from daemon.config import Settings
from daemon.connection import REDIS_DOWN, connect
from daemon.errors import CallbackRefused, InvalidCallbackUrl
from daemon.logs import configure_logging
from daemon.pool.slots import set_parent_death_signal
from daemon.store import CallbackQueue, DueCallback, public_job

log = structlog.get_logger()

POLL = 0.2  # seconds between looks at the due set when nothing was due
LEASE_MARGIN = 5.0  # beyond the timeouts, before a taken delivery is due again
MAX_REPLY_BYTES = 64 * 1024  # what is read of a receiver's answer (then dropped)


class Sent(NamedTuple):
    """How one try went: delivered, or why not (and whether trying again can help)."""

    ok: bool
    status: int | None = None
    error: str = ""
    permanent: bool = False


def backoff(settings: Settings, attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling from
    CALLBACK_RETRY_BASE up to CALLBACK_RETRY_MAX, with up to 10 % jitter so that the
    callbacks of one burst do not all come back together."""
    wait = min(settings.callback_retry_base * 2 ** (attempts - 1), settings.callback_retry_max)
    return wait * random.uniform(1.0, 1.1)


# --- one try ------------------------------------------------------------------------------
class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to an address checked beforehand; the Host header still names the host."""

    def __init__(self, target: webhooks.Target, address: str, connect_timeout: float,
                 read_timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=connect_timeout)
        self.address, self.read_timeout = address, read_timeout

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock.settimeout(self.read_timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to an address checked beforehand; the certificate is checked for the host."""

    def __init__(self, target: webhooks.Target, address: str, connect_timeout: float,
                 read_timeout: float) -> None:
        self.tls = ssl.create_default_context()  # the system's CAs, hostname checked
        super().__init__(target.host, target.port, timeout=connect_timeout, context=self.tls)
        self.address, self.read_timeout = address, read_timeout

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        sock.settimeout(self.read_timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def signed_request(settings: Settings, callback: DueCallback,
                   now: float | None = None) -> tuple[bytes, dict[str, str]]:
    """The body (the job JSON) and the headers of one try."""
    body = orjson.dumps(public_job(callback.record))
    timestamp = str(int(now if now is not None else time.time()))
    return body, {
        "Content-Type": "application/json",
        "User-Agent": f"textractd/{__version__}",
        webhooks.TIMESTAMP_HEADER: timestamp,
        webhooks.DELIVERY_HEADER: callback.delivery_id,
        webhooks.SIGNATURE_HEADER: webhooks.signature(settings.callback_secret, timestamp,
                                                      body),
    }


def send(settings: Settings, callback: DueCallback) -> Sent:
    """POST the callback once; never raises."""
    try:
        target = webhooks.parse_url(callback.url)
        policy = settings.callback_policy
        policy.check_target(target)
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            return Sent(False, error=f"{target.host} does not resolve: {exc}")
        addresses = webhooks.addresses_of(infos)
        policy.check_addresses(target.host, addresses)
    except InvalidCallbackUrl as exc:
        return Sent(False, error=str(exc), permanent=True)
    except CallbackRefused as exc:
        return Sent(False, error=str(exc))  # CALLBACK_ALLOW or DNS may change: try again
    kind = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    conn = kind(target, str(addresses[0]), settings.callback_connect_timeout,
                settings.callback_read_timeout)
    body, headers = signed_request(settings, callback)
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(MAX_REPLY_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        return Sent(False, error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
    if 200 <= response.status < 300:
        return Sent(True, response.status)
    if 300 <= response.status < 400:
        return Sent(False, response.status, f"redirect to {response.getheader('Location')!r} "
                                             "not followed")
    return Sent(False, response.status, f"the receiver answered {response.status}")


# --- the sender process ----------------------------------------------------------------
class Sender:
    def __init__(self, settings: Settings, queue: CallbackQueue) -> None:
        self.settings = settings
        self.queue = queue
        self.stopping = threading.Event()
        self.lease = (settings.callback_connect_timeout + settings.callback_read_timeout
                      + LEASE_MARGIN)
        self._busy = 0  # deliveries being sent on the threads
        self._lock = threading.Lock()

    def run(self) -> None:
        width = max(1, self.settings.callback_concurrency)
        delay = POLL
        with ThreadPoolExecutor(width, thread_name_prefix="callback") as threads:
            while not self.stopping.is_set():
                with self._lock:
                    free = width - self._busy
                try:
                    taken = self.queue.claim(free, self.lease) if free else []
                    delay = POLL
                except REDIS_DOWN as exc:
                    log.warning("callbacks.redis_unavailable", error=str(exc), retry_in=delay)
                    taken, delay = [], min(delay * 2, 5.0)
                for callback in taken:
                    with self._lock:
                        self._busy += 1
                    threads.submit(self._deliver, callback)
                if len(taken) < free or not free:
                    self.stopping.wait(delay)
        log.info("callbacks.stopped")

    def _deliver(self, callback: DueCallback) -> None:
        try:
            started = time.perf_counter()
            sent = send(self.settings, callback)
            attempts = callback.attempts + 1
            fields = {"job_id": callback.record.get("id"), "delivery_id": callback.delivery_id,
                      "attempt": attempts, "status": sent.status,
                      "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
            if sent.ok:
                self.queue.delivered(callback.delivery_id)
                log.info("callback.delivered", **fields)
            elif sent.permanent or attempts >= self.settings.callback_max_attempts:
                self.queue.give_up(callback, attempts, sent.error)
                log.warning("callback.given_up", error=sent.error, **fields)
            else:
                wait = backoff(self.settings, attempts)
                self.queue.retry_at(callback.delivery_id, time.time() + wait, attempts,
                                    sent.error)
                log.info("callback.failed", error=sent.error, retry_in=round(wait, 1),
                         **fields)
        except REDIS_DOWN as exc:
            # The lease runs out and the delivery is due again: sent twice at worst.
            log.warning("callback.unrecorded", delivery_id=callback.delivery_id,
                        error=str(exc))
        except Exception:
            log.exception("callback.crashed", delivery_id=callback.delivery_id)
        finally:
            with self._lock:
                self._busy -= 1


def sender_main(settings: Settings, master_pid: int) -> None:
    """Entry point of the sender process, forked by the pool master's chores."""
    # The master's wakeup pipe and handlers are not ours.
    inherited = signal.set_wakeup_fd(-1)
    if inherited >= 0:
        os.close(inherited)
    configure_logging("callbacks")
    sender = Sender(settings, CallbackQueue(connect(settings)))
    signal.signal(signal.SIGTERM, lambda _s, _f: sender.stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != master_pid:  # the master died before prctl took effect
        return
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    log.info("callbacks.started", concurrency=settings.callback_concurrency)
    sender.run()
