"""Where the service is and which key to present, when the caller does not say.

In order: the arguments, then TEXTRACTD_URL / TEXTRACTD_API_KEY, then the `.env` of the
local installation ($TEXTRACTD_HOME, else the checkout), read with the service's own
reader, so that `textractd extract` on the machine that runs textractd needs no option.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

DEFAULT_PORT = 5001
URL_ENV = "TEXTRACTD_URL"
KEY_ENV = "TEXTRACTD_API_KEY"


class Target(NamedTuple):
    url: str
    api_key: str | None


def resolve_target(url: str | None = None, api_key: str | None = None,
                   environ: dict[str, str] | None = None) -> Target:
    env = os.environ if environ is None else environ
    """`api_key=""` sends no key at all; None looks for one (the order above)."""
    url = url or env.get(URL_ENV) or None
    if api_key is None:
        api_key = env.get(KEY_ENV) or None
    if url is None or api_key is None:
        local = _local_installation(env)
        url = url or local.url
        if api_key is None:
            api_key = local.api_key
    return Target(url.rstrip("/"), api_key)


def _local_installation(env: os._Environ[str] | dict[str, str]) -> Target:
    """The api of this machine's installation: its PORT and HOST, and the first key of
    API_KEY (a `tenant:key` entry gives its key)."""
    # Imported here: a client given a url and a key needs nothing from the service's code.
    from daemon.config import ROOT, ConfigError, parse_access_keys, read_env_file

    home = Path(env.get("TEXTRACTD_HOME") or ROOT)
    values = read_env_file(home / ".env")
    port = values.get("PORT") or str(DEFAULT_PORT)
    host = values.get("HOST") or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: reach it on loopback
        host = "127.0.0.1"
    entries = tuple(k.strip() for k in (values.get("API_KEY") or "").split(",") if k.strip())
    try:
        keys = parse_access_keys(entries)
    except ConfigError:
        keys = ()  # the service refuses this .env too; the caller gets no key
    key = keys[0].secret if keys else None
    return Target(f"http://{host}:{port}", key)
