"""Every setting of textractd and its default, read once from the environment and `.env`.

The names are the service's contract (README lists them); defaults live here and nowhere
else. Each process builds one `Settings` at start and passes it down.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from dotenv import dotenv_values

from daemon.webhooks import CallbackPolicy

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
DEFAULT_TENANT = "default"  # the tenant of a bare key in API_KEY
TIKA_ANONYMOUS_CHOICES = ("", "loopback")
_TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def read_env_file(path: Path) -> dict[str, str]:
    """`path` read by python-dotenv itself, as Docker Compose and most tools read a `.env`.

    So `KEY=60 # note` is 60, quotes (single or double) are removed and a `#` inside them
    kept, `export ` is allowed and `KEY=` is empty. No `${VAR}` expansion (interpolate
    off): a value is what the file says, and scripts/lib.sh's `load_env` (which calls
    this) could not otherwise promise the same values. A key without `=` is dropped.
    """
    try:
        values = dotenv_values(path, interpolate=False)
    except PermissionError:
        return {}
    return {key: value for key, value in values.items() if value is not None}


def _setting(default: T, help_text: str, shown: str | None = None) -> T:
    """A setting's default and its one-line meaning (the README's table is made of these).

    `shown` is how the README states a default that depends on the machine."""
    return field(default=default, metadata={"help": help_text, "shown": shown})


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    home: Path = ROOT
    # --- access ----------------------------------------------------------------------
    api_keys: tuple[str, ...] = _setting((), "comma-separated API keys, each `tenant:key` or "
                                             "a bare key (tenant `default`); several keys "
                                             "of one tenant allow rotation")
    admin_api_keys: tuple[str, ...] = _setting((), "keys that may also read /metrics, "
                                                   "/status, /health/detailed (same form); "
                                                   "empty: the `default` tenant's keys")
    allow_no_auth: bool = _setting(False, "1: run without a key (local use only; logged)")
    # --- network ---------------------------------------------------------------------
    host: str = _setting("127.0.0.1", "address the api listens on (0.0.0.0 in Docker)")
    port: int = _setting(5001, "the api's port")
    redis_url: str = _setting("", "empty: the embedded redis on var/redis.sock; else "
                                  "redis://, rediss://, unix:// or redis+sentinel://")
    redis_max_retries: int = _setting(5, "retries with exponential backoff per Redis call")
    redis_socket_timeout: float = _setting(5.0, "seconds before a Redis call times out")
    redis_wait_for_replicas: int = _setting(0, ">0: a 202 waits until that many replicas "
                                               "have the job (WAIT)")
    # --- uploads ---------------------------------------------------------------------
    max_content_length: int = _setting(16 * 1024 * 1024, "largest upload, bytes (413 above)")
    upload_memory_mb: int = _setting(128, "upload bodies one api process holds at once "
                                          "(peak RSS is about 45 MB + 2.5-3.5 x this)")
    upload_timeout: float = _setting(30.0, "seconds a body may take to arrive (408 after)")
    upload_min_rate_kb: int = _setting(8, "a body slower than this, KiB/s over each "
                                          "UPLOAD_RATE_WINDOW, is cut with 408; 0: no "
                                          "minimum")
    upload_rate_window: float = _setting(5.0, "seconds over which UPLOAD_MIN_RATE_KB is "
                                              "judged; the first is a grace period")
    max_uploads_per_key: int = _setting(8, "uploads one key may be sending at once (per api "
                                           "process); the next gets 429; 0: no bound")
    max_queue_depth: int = _setting(1000, "unfinished jobs accepted before 503 queue_full")
    rate_limit_per_minute: int = _setting(0, "requests per minute per key; 0: no limit")
    max_wait: float = _setting(300.0, "upper bound of ?wait=, seconds")
    extract_wait: float = _setting(60.0, "how long POST /v1/extract waits by default")
    # --- the Tika server dialect (daemon.api.tika) -----------------------------------
    tika_wait: float = _setting(60.0, "seconds a Tika route (/tika, /rmeta, /meta) waits for "
                                      "its job before answering 503 + Retry-After; keep it "
                                      "below the clients' timeouts")
    tika_anonymous: str = _setting("", "`loopback`: the Tika routes take requests without a "
                                       "key from 127.0.0.1/::1 (never behind a proxy on the "
                                       "same host; logged at start); empty: a key always")
    tika_port: int = _setting(0, ">0: a second listener on this port (Tika's own is 9998) "
                                 "serving the same app, so a client's default URL works")
    batch_max_files: int = _setting(100, "`file` parts one POST /v1/batches may hold (400 "
                                         "too_many_files above); the body as a whole is "
                                         "bounded by MAX_CONTENT_LENGTH")
    # --- signed webhooks (callback_url) ----------------------------------------------
    callback_allow: tuple[str, ...] = _setting((), "hosts and networks (CIDR) a "
                                                   "callback_url may reach; empty: "
                                                   "callbacks are off. Loopback, private "
                                                   "and link-local addresses only if listed")
    callback_secret: str = _setting("", "the HMAC-SHA256 key callbacks are signed with "
                                        "(required with CALLBACK_ALLOW)")
    callback_max_attempts: int = _setting(10, "deliveries tried per callback before it is "
                                              "given up")
    callback_retry_base: float = _setting(10.0, "seconds before the first retry; each "
                                                "next one waits twice as long")
    callback_retry_max: float = _setting(1800.0, "longest wait between two tries, seconds "
                                                 "(the defaults span 72 minutes)")
    callback_connect_timeout: float = _setting(3.0, "seconds to connect to a receiver")
    callback_read_timeout: float = _setting(10.0, "seconds a receiver may take to answer")
    callback_concurrency: int = _setting(4, "callbacks the sender sends at once")
    # --- workers ---------------------------------------------------------------------
    role: str = _setting("all", "all | api | worker: which programs this host runs")
    log_to_stdout: bool = _setting(False, "1: supervisord passes every program's JSON lines "
                                          "to its own stdout instead of logs/*.log (the "
                                          "container's default)")
    worker_processes: int = _setting(os.cpu_count() or 1, "children in the pool",
                                     shown="CPU count")
    worker_max_memory_mb: int = _setting(512, "soft limit: above it after a job, a child "
                                              "exits to be replaced")
    worker_hard_memory_mb: int = _setting(1536, "hard limit: a child (with its tools) above "
                                                "it during a job is killed")
    worker_max_jobs: int = _setting(1000, "a child is recycled after this many jobs "
                                          "(+ up to 10 % jitter)")
    job_timeout: float = _setting(120.0, "hard deadline per job, seconds")
    ocr_pages_in_flight: int = _setting(-1, "pages of one scan (a PDF sent with "
                                            "method=tesseract) queued or OCRed at once "
                                            "across the pool; each page done queues the "
                                            "next, so other jobs keep their turn. 0: the "
                                            "whole scan in one child", shown="worker count")
    fast_doc: bool = _setting(True, "read prose-only legacy .doc directly (milliseconds) "
                                    "instead of starting LibreOffice (1.4 s); 0: always "
                                    "LibreOffice")
    max_attempts: int = _setting(3, "deliveries before a job fails and is dead-lettered")
    quarantine_ttl: int = _setting(86400, "seconds a document that killed its worker "
                                          "MAX_ATTEMPTS times is refused (422 "
                                          "poison_document)")
    tool_env: tuple[str, ...] = _setting((), "comma-separated names of further environment "
                                             "variables the workers' tools receive; all but "
                                             "PATH, HOME, LANG/LC_*, TZ, TMPDIR, "
                                             "OMP_THREAD_LIMIT, TESSDATA_PREFIX is withheld")
    job_disk_max_mb: int = _setting(256, "disk one job's tools may fill: each file "
                                         "(RLIMIT_FSIZE) and the job's folder in all "
                                         "(watched); past it the job fails output_limit")
    claim_idle: float = _setting(0.0, "idle seconds before another consumer's entry is "
                                      "taken over; 0: JOB_TIMEOUT + 30")
    result_ttl: int = _setting(3600, "seconds a finished job and its text are kept")
    result_cache_ttl: int = _setting(3600, "seconds a done job's result serves new uploads "
                                           "of the same bytes and options (at most "
                                           "RESULT_TTL); 0: no result cache")
    result_cache_shared: bool = _setting(False, "1: the result cache is shared by every "
                                                "tenant; else each tenant has its own")
    shutdown_timeout: float = _setting(30.0, "seconds to finish in-flight work on stop")
    chore_interval: float = _setting(5.0, "seconds between the master's chores")
    consumer_prefix: str = _setting(socket.gethostname(), "consumer names are "
                                                          "`<prefix>-<slot>`", shown="host name")
    # --- circuit breaker -------------------------------------------------------------
    circuit_breaker_failure_threshold: int = _setting(3, "failures of distinct documents in "
                                                         "a row that open a breaker")
    circuit_breaker_recovery_timeout: float = _setting(120.0, "seconds before an open "
                                                              "breaker lets trials through")
    circuit_breaker_success_threshold: int = _setting(2, "trial successes that close it")
    breaker_max_wait: float = _setting(600.0, "seconds a job waits for its breaker, then "
                                              "fails extractor_unavailable")
    # --- document limits (bomb guards) -----------------------------------------------
    max_zip_entries: int = _setting(10_000, "entries in a docx/xlsx/pptx/odt/ods/epub")
    max_unzipped_bytes: int = _setting(512 * 1024 * 1024, "their total uncompressed size")
    max_compression_ratio: int = _setting(200, "their compression ratio")
    max_image_pixels: int = _setting(50_000_000, "pixels in an image")
    max_pdf_pages: int = _setting(2_000, "pages in a PDF")
    max_ocr_pixels: int = _setting(300_000_000, "pixels of all a PDF's pages rendered for "
                                                "OCR (method=tesseract, 150 dpi; written "
                                                "to the spool at 3 bytes a pixel)")
    max_text_bytes: int = _setting(64 * 1024 * 1024, "extracted text, bytes")
    max_nesting_depth: int = _setting(256, "elements open at once in an HTML document "
                                           "(libxml2's own bound for XML)")
    max_nesting_work: int = _setting(4_000_000, "an HTML document's elements, each counted "
                                                "once per element enclosing it: textract's "
                                                "HTML reader takes time in proportion")
    max_pdf_content_bytes: int = _setting(128 * 1024 * 1024, "a PDF's drawing "
                                                             "instructions, inflated")
    max_pdf_state_depth: int = _setting(10_000, "graphics states a PDF saves (q) without "
                                                "restoring them (Q): ~1 KB each to a reader")
    max_pdf_path_segments: int = _setting(2_000_000, "segments of one PDF path before it "
                                                     "is painted: ~200 bytes each")
    max_postscript_seconds: int = _setting(30, "CPU seconds Ghostscript may run a PostScript "
                                               "document (RLIMIT_CPU); keep it below "
                                               "JOB_TIMEOUT")
    # --- health thresholds -----------------------------------------------------------
    cpu_warn: float = _setting(70.0, "host CPU % over CPU_WINDOW for WARNING")
    cpu_crit: float = _setting(90.0, "CPU % for CRITICAL while the queue lags (a job waits "
                                     "QUEUE_LAG or more); a busy CPU alone is a WARNING")
    cpu_window: float = _setting(60.0, "seconds the cpu check's CPU share spans (at least "
                                       "1); the CLI reads the 1-minute load average at 60 "
                                       "or more, else measures this long before answering")
    queue_lag: float = _setting(60.0, "seconds the oldest job no child has taken must have "
                                      "waited for a saturated CPU to be CRITICAL")
    deadline_grace: float = _setting(10.0, "seconds past JOB_TIMEOUT a job may still be "
                                           "held before the checks say its deadline was not "
                                           "enforced (the master kills at JOB_TIMEOUT)")
    memory_warn: float = _setting(80.0, "memory % for WARNING")
    memory_crit: float = _setting(90.0, "memory % for CRITICAL")
    disk_warn: float = _setting(80.0, "disk % (var/, logs/) for WARNING")
    disk_crit: float = _setting(90.0, "disk % for CRITICAL")
    temp_files_warn_mb: float = _setting(500.0, "spool size for WARNING, MB")

    # Environment names that differ from the upper-cased field name.
    ENV_NAMES = {"api_keys": "API_KEY", "admin_api_keys": "ADMIN_API_KEY",
                 "home": "TEXTRACTD_HOME"}

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Settings from `environ` (default: os.environ) over `$TEXTRACTD_HOME/.env`."""
        env = dict(os.environ if environ is None else environ)
        home = Path(env.get("TEXTRACTD_HOME") or ROOT)
        merged = {**read_env_file(home / ".env"), **env}
        values: dict[str, Any] = {"home": home}
        for f in fields(cls):
            if f.name == "home":
                continue
            name = env_name(f.name)
            raw = merged.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw, type(f.default))
        settings = cls(**values)
        _ = settings.access_keys  # a malformed key list is refused here, at start
        if settings.cpu_window < 1.0:  # the api samples the CPU times once a second
            raise ConfigError("CPU_WINDOW must be at least 1 (seconds)")
        if settings.tika_anonymous not in TIKA_ANONYMOUS_CHOICES:
            raise ConfigError("TIKA_ANONYMOUS must be empty or `loopback`")
        if settings.callback_allow and not settings.callback_secret:
            raise ConfigError("CALLBACK_ALLOW is set but CALLBACK_SECRET is empty: "
                              "callbacks would go out unsigned")
        _ = settings.callback_policy  # a malformed CALLBACK_ALLOW is refused at start too
        return settings

    # --- derived paths and names -----------------------------------------------------
    @property
    def var_dir(self) -> Path:
        return self.home / "var"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def spool_dir(self) -> Path:
        """Where children write payloads; 0700, files 0600, swept by the master."""
        return self.var_dir / "spool"

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or f"unix://{self.var_dir / 'redis.sock'}"

    @property
    def effective_claim_idle(self) -> float:
        """Idle time after which another consumer's entry is taken over.

        Above the hard deadline, so a live child's job never looks abandoned.
        """
        return self.claim_idle or self.job_timeout + 30.0

    @property
    def effective_ocr_pages_in_flight(self) -> int:
        """OCR_PAGES_IN_FLIGHT, its default (below 0) being the pool's worker count."""
        if self.ocr_pages_in_flight < 0:
            return max(1, self.worker_processes)
        return self.ocr_pages_in_flight

    @property
    def auth_required(self) -> bool:
        return not self.allow_no_auth

    @cached_property
    def access_keys(self) -> tuple[AccessKey, ...]:
        """Every key the api accepts, with its tenant and whether it is an admin key."""
        return parse_access_keys(self.api_keys, self.admin_api_keys)

    @cached_property
    def callback_policy(self) -> CallbackPolicy:
        """Where a callback_url may point (CALLBACK_ALLOW, parsed once)."""
        try:
            return CallbackPolicy.parse(self.callback_allow)
        except ValueError as exc:
            raise ConfigError(f"CALLBACK_ALLOW: {exc}") from exc


class AccessKey(NamedTuple):
    tenant: str
    secret: str
    admin: bool


def parse_access_keys(api_keys: tuple[str, ...],
                      admin_keys: tuple[str, ...] = ()) -> tuple[AccessKey, ...]:
    """API_KEY and ADMIN_API_KEY entries as keys: `tenant:key`, or a bare key (`default`).

    Without ADMIN_API_KEY the default tenant's keys are the admin keys, so a setting from
    before tenants (bare keys only) keeps every route. Errors never quote a key."""
    tenant_of: dict[str, str] = {}
    admin: set[str] = set()
    for setting, entries in (("API_KEY", api_keys), ("ADMIN_API_KEY", admin_keys)):
        for position, entry in enumerate(entries, 1):
            tenant, secret = _split_entry(entry, setting, position)
            if tenant_of.setdefault(secret, tenant) != tenant:
                raise ConfigError(f"{setting}: entry {position} repeats a key of tenant "
                                  f"{tenant_of[secret]!r} under tenant {tenant!r}")
            if setting == "ADMIN_API_KEY" or (not admin_keys and tenant == DEFAULT_TENANT):
                admin.add(secret)
    return tuple(AccessKey(tenant, secret, secret in admin)
                 for secret, tenant in tenant_of.items())


def _split_entry(entry: str, setting: str, position: int) -> tuple[str, str]:
    if ":" not in entry:
        return DEFAULT_TENANT, entry
    tenant, _, secret = entry.partition(":")
    tenant, secret = tenant.strip(), secret.strip()
    if not _TENANT_NAME.match(tenant):
        raise ConfigError(f"{setting}: entry {position} has a tenant name that is not 1-64 "
                          "letters, digits, '.', '_' or '-' (a key containing ':' needs "
                          "its tenant first: `default:<key>`)")
    if not secret:
        raise ConfigError(f"{setting}: entry {position} names tenant {tenant!r} but no key")
    return tenant, secret


def env_name(name: str) -> str:
    return Settings.ENV_NAMES.get(name, name.upper())


def documented_settings() -> list[tuple[str, object, str]]:
    """(environment name, default, meaning) of every setting, in declaration order."""
    return [(env_name(f.name), f.metadata["shown"] or f.default, f.metadata["help"])
            for f in fields(Settings) if "help" in f.metadata]


def _convert(name: str, raw: str, kind: type) -> object:
    try:
        if kind is bool:
            return _bool(raw)
        if kind is tuple:
            return tuple(k.strip() for k in raw.split(",") if k.strip())
        return kind(raw)
    except ValueError as exc:
        raise ConfigError(f"{name.upper()}={raw!r} is not a valid {kind.__name__}") from exc


class ConfigError(ValueError):
    """Raised when an environment value cannot be read as its setting's type."""
