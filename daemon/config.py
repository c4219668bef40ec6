"""Every setting of textractd and its default, read once from the environment and `.env`.

The names are the service's contract (README lists them); defaults live here and nowhere
else. Each process builds one `Settings` at start and passes it down.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a dotenv file: KEY=VALUE lines, `#` comments, optional quotes."""
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except (FileNotFoundError, PermissionError):
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    home: Path = ROOT
    # --- access ----------------------------------------------------------------------
    api_keys: tuple[str, ...] = ()
    allow_no_auth: bool = False  # ALLOW_NO_AUTH=1: local use without a key, logged loudly
    # --- network ---------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 5001
    redis_url: str = ""  # empty: the embedded redis-server on var/redis.sock
    redis_max_retries: int = 5
    redis_socket_timeout: float = 5.0
    redis_wait_for_replicas: int = 0  # >0: WAIT for that many replicas before a 202
    # --- uploads ---------------------------------------------------------------------
    max_content_length: int = 16 * 1024 * 1024
    max_concurrent_uploads: int = 8
    upload_timeout: float = 30.0  # a body must arrive within this many seconds
    max_queue_depth: int = 1000
    rate_limit_per_minute: int = 0  # per API key; 0 turns it off
    max_wait: float = 300.0  # upper bound of ?wait=
    extract_wait: float = 60.0  # how long POST /v1/extract waits by default
    # --- workers ---------------------------------------------------------------------
    role: str = "all"  # all | api | worker
    worker_processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    worker_max_memory_mb: int = 512  # soft: finish the job, then exit to be replaced
    worker_hard_memory_mb: int = 1536  # hard: killed during the job
    worker_max_jobs: int = 1000
    job_timeout: float = 120.0
    max_attempts: int = 3
    claim_idle: float = 0.0  # 0: job_timeout + 30 s
    result_ttl: int = 3600
    shutdown_timeout: float = 30.0
    chore_interval: float = 5.0
    consumer_prefix: str = field(default_factory=socket.gethostname)
    # --- circuit breaker -------------------------------------------------------------
    circuit_breaker_failure_threshold: int = 3
    circuit_breaker_recovery_timeout: float = 120.0
    circuit_breaker_success_threshold: int = 2
    breaker_max_wait: float = 600.0  # a job waits this long for its breaker, then fails
    # --- document limits (bomb guards) -----------------------------------------------
    max_zip_entries: int = 10_000
    max_unzipped_bytes: int = 512 * 1024 * 1024
    max_compression_ratio: int = 200
    max_image_pixels: int = 50_000_000
    max_pdf_pages: int = 2_000
    max_text_bytes: int = 64 * 1024 * 1024
    # --- health thresholds -----------------------------------------------------------
    cpu_warn: float = 70.0
    cpu_crit: float = 90.0
    memory_warn: float = 80.0
    memory_crit: float = 90.0
    disk_warn: float = 80.0
    disk_crit: float = 90.0
    temp_files_warn_mb: float = 500.0

    # Environment names that differ from the upper-cased field name.
    ENV_NAMES = {"api_keys": "API_KEY", "home": "TEXTRACTD_HOME"}

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Settings from `environ` (default: os.environ) over `$TEXTRACTD_HOME/.env`."""
        env = dict(os.environ if environ is None else environ)
        home = Path(env.get("TEXTRACTD_HOME") or ROOT)
        merged = {**read_env_file(home / ".env"), **env}
        values: dict[str, object] = {"home": home}
        for f in fields(cls):
            if f.name == "home":
                continue
            name = cls.ENV_NAMES.get(f.name, f.name.upper())
            raw = merged.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw, type(_default(f)))
        return cls(**values)

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
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def effective_claim_idle(self) -> float:
        """Idle time after which another consumer's entry is taken over.

        Above the hard deadline, so a live child's job never looks abandoned.
        """
        return self.claim_idle or self.job_timeout + 30.0

    @property
    def auth_required(self) -> bool:
        return not self.allow_no_auth


def _default(f):
    return f.default_factory() if callable(f.default_factory) else f.default


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
