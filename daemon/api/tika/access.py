"""Which paths belong to the Tika dialect, and who may use them without a key.

Imports nothing of the api, so the auth middleware may ask it.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

# The route roots Tika's clients call (Tika Server 3.x); each covers its sub-paths too.
TIKA_ROOTS = ("/tika", "/rmeta", "/meta", "/detect", "/version")
LOOPBACK = "loopback"  # TIKA_ANONYMOUS's one value that opens anything


def is_tika_path(path: str) -> bool:
    """True for `/` (Tika's welcome page) and every route under a Tika root."""
    return path == "/" or any(path == root or path.startswith(root + "/")
                              for root in TIKA_ROOTS)


def keyless_allowed(request: web.Request, mode: str) -> bool:
    """Whether a request without a key may use this route (TIKA_ANONYMOUS=loopback).

    The peer address is the socket's own, never a forwarded header: a proxy could set
    that. A proxy on the same host makes every request loopback, which the README warns of.
    """
    if mode != LOOPBACK or not is_tika_path(request.path):
        return False
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if not isinstance(peer, tuple) or not peer:
        return False  # a unix socket or an unknown peer: no
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
