"""Signed webhooks, the parts both programs need: where a callback may go, and its signature.

The api checks a `callback_url` when the upload arrives (400 if refused); the pool's
sender (daemon.pool.callbacks) checks it again when it sends, against the addresses the
host resolves to at that moment, and connects to the address it checked: a name that
resolved to a public address at submit and to 127.0.0.1 later (DNS rebinding) is refused
then. Callbacks are off unless CALLBACK_ALLOW lists hosts or networks; an address that is
not global (loopback, private, link-local, ...) is refused unless a listed network holds it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from daemon.errors import CallbackRefused, InvalidCallbackUrl

MAX_URL_BYTES = 2048
SIGNATURE_HEADER = "X-Textractd-Signature"
TIMESTAMP_HEADER = "X-Textractd-Timestamp"
DELIVERY_HEADER = "X-Textractd-Delivery"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Target(NamedTuple):
    """A callback URL taken apart: what to resolve, where to connect, what to ask for."""

    scheme: str
    host: str  # lower case, without brackets
    port: int
    path: str  # with its query


def parse_url(url: str) -> Target:
    """`url` as a Target; raises InvalidCallbackUrl when it is not one textractd calls."""
    if not url or len(url.encode("utf-8", "surrogateescape")) > MAX_URL_BYTES:
        raise InvalidCallbackUrl(f"callback_url must be 1 to {MAX_URL_BYTES} bytes")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise InvalidCallbackUrl("callback_url contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidCallbackUrl(f"callback_url is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidCallbackUrl("callback_url must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidCallbackUrl("callback_url must not carry credentials")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname.lower().rstrip("."),
                  port or (443 if parts.scheme == "https" else 80), path)


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


@dataclass(frozen=True)
class CallbackPolicy:
    """CALLBACK_ALLOW: host names (exact, or `*.example.com` for its subdomains) and
    networks (CIDR, or one address)."""

    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: tuple[str, ...]) -> CallbackPolicy:
        hosts, suffixes, networks = set(), [], []
        for entry in (e.strip().lower() for e in entries if e.strip()):
            if entry[0].isdigit() or ":" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError as exc:
                    raise ValueError(f"{entry!r} is not a network or address") from exc
            elif entry.startswith("*."):
                suffixes.append(entry[1:])
            else:
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks))

    @property
    def enabled(self) -> bool:
        return bool(self.hosts or self.suffixes or self.networks)

    def listed_network(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def check_target(self, target: Target) -> None:
        """Whether the URL's host may be called at all, before resolving it."""
        if not self.enabled:
            raise CallbackRefused("callbacks are off on this server (CALLBACK_ALLOW is empty)")
        literal = _address(target.host)
        if literal is not None:
            self.check_addresses(target.host, [literal])
        elif not (target.host in self.hosts or target.host.endswith(self.suffixes)
                  or self.networks):
            raise CallbackRefused(f"callback host {target.host!r} is not in CALLBACK_ALLOW")

    def check_addresses(self, host: str, addresses: list[Address]) -> None:
        """Every address `host` resolved to must be allowed: listed in a network, or a
        global address of a listed host name."""
        if not addresses:
            raise CallbackRefused(f"callback host {host!r} does not resolve")
        named = host in self.hosts or host.endswith(self.suffixes)
        for address in addresses:
            if self.listed_network(address):
                continue
            if not address.is_global:
                raise CallbackRefused(f"callback host {host!r} is at {address}, a private, "
                                      "loopback or link-local address not in CALLBACK_ALLOW")
            if not named:
                raise CallbackRefused(f"callback host {host!r} is at {address}, not in "
                                      "CALLBACK_ALLOW")


def addresses_of(infos: list[tuple]) -> list[Address]:
    """The addresses in getaddrinfo's answer, in its order, without repeats."""
    seen: list[Address] = []
    for info in infos:
        address = _address(str(info[4][0]))
        if address is not None and address not in seen:
            seen.append(address)
    return seen


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 over `<timestamp>.<body>`: what X-Textractd-Signature carries."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                    hashlib.sha256).hexdigest()
