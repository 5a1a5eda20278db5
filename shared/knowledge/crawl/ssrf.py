"""SSRF guard: fetch only http(s) URLs whose host resolves to public addresses, checked again at connect time.

`check_url` gives a clear error before anything is sent (and guards the Firecrawl path, where Firecrawl
fetches for us). `guarded_transport` re-resolves at connect time and connects to the vetted address
itself, so a DNS answer that changes between the check and the connection (rebinding) cannot reach
an internal host. Redirects are followed by the fetcher one hop at a time, each hop checked here.
ALLOW_PRIVATE_HOSTS (refused in production) relaxes the address checks, never the scheme check:
"loopback" (what `make dev` and the tests use) lets 127.0.0.0/8 and ::1 through and nothing else,
"true" turns the address checks off.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from functools import lru_cache
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpcore
import httpx

from shared.core.settings import get_settings
from shared.knowledge.crawl import CrawlError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata endpoints (AWS/GCP/Azure, AWS ECS, AWS IPv6, Alibaba): named so the error says so.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Not public, whatever the running Python's ipaddress tables say (they changed between 3.11 and 3.13).
EXTRA_BLOCKED = {ipaddress.ip_network(net): reason for net, reason in (
    ("fec0::/10", "site-local"),          # deprecated site-local IPv6, still routed inside some networks
    ("100.64.0.0/10", "non-public"),      # carrier-grade NAT (RFC 6598): the provider's internal network
    ("192.0.0.0/24", "non-public"),       # IETF protocol assignments, including 192.0.0.9/10 anycast
    ("192.88.99.0/24", "non-public"),     # deprecated 6to4 relay anycast
    ("198.18.0.0/15", "non-public"),      # benchmarking networks, used inside data centres
    ("3fff::/20", "non-public"),          # IPv6 documentation (RFC 9637)
    ("64:ff9b:1::/48", "non-public"),     # local-use NAT64 (RFC 8215): the IPv4 inside may be anything
    ("5f00::/16", "non-public"),          # SRv6 segment ids
)}


class BlockedURL(CrawlError):
    """A URL we refuse to fetch (scheme, form or address); never retryable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, retryable=False)


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` may not be fetched ("loopback", "private", "metadata", ...), or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 hidden inside IPv6 (mapped, 6to4, Teredo, NAT64) is judged as the IPv4 it reaches.
        embedded = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None,
                    ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None]
        for inner in embedded:
            if inner is not None and (reason := blocked_reason(inner)):
                return reason
    if ip in METADATA_ADDRESSES:
        return "metadata"
    for reason in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{reason}"):
            return reason.replace("_", "-")
    for network, reason in EXTRA_BLOCKED.items():
        if ip.version == network.version and ip in network:
            return reason
    if not ip.is_global:  # documentation ranges and whatever else IANA marks as not globally reachable
        return "non-public"
    return None


def allow_private() -> bool:
    """ALLOW_PRIVATE_HOSTS=true: no address checks at all (a developer's explicit choice, never production)."""
    return get_settings().allow_private_hosts == "true"


def loopback_allowed(ip: IPAddress) -> bool:
    """ALLOW_PRIVATE_HOSTS=loopback and `ip` is this machine itself (not an IPv4 loopback inside 6to4/NAT64)."""
    if get_settings().allow_private_hosts != "loopback":
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def parse_url(url: str) -> SplitResult:
    """Scheme and form checks only (no DNS): http or https, a host, no credentials, a valid port."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise BlockedURL("invalid_url", f"{url!r} is not a valid URL.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise BlockedURL("unsupported_scheme",
                         f"Only http and https URLs can be fetched, not {parts.scheme or 'none'}.")
    if not parts.hostname:
        raise BlockedURL("invalid_url", f"{url!r} has no host name.")
    if parts.username or parts.password:
        raise BlockedURL("credentials_in_url", "URLs with a user name or password are not fetched.")
    return parts


def resolve_public(host: str, port: int) -> list[str]:
    """The host's addresses, all public; BlockedURL when any is not (a later connection could pick it)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise CrawlError("host_not_found", f"The host {host} could not be resolved.", retryable=True) from None
    addresses: list[str] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        ip = ipaddress.ip_address(text)
        reason = blocked_reason(ip)
        if reason and not loopback_allowed(ip):
            raise BlockedURL("private_address",
                             f"{host} resolves to {text}, which is not public ({reason}); "
                             "only public hosts can be fetched.")
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise CrawlError("host_not_found", f"The host {host} has no address.", retryable=True)
    return addresses


def check_url(url: str) -> str:
    """Raise BlockedURL (or a retryable host_not_found) unless `url` may be fetched; returns the URL."""
    parts = parse_url(url)
    if not allow_private():
        resolve_public(parts.hostname or "", parts.port or (443 if parts.scheme.lower() == "https" else 80))
    return url


class GuardedBackend(httpcore.SyncBackend):
    """Resolves and vets the host at connect time, then connects to the vetted address (not the name)."""

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        last_error: Exception | None = None
        for address in resolve_public(host, port):
            try:
                # TLS still verifies the original host name: httpcore passes it as server_hostname.
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error


@lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """Loading the CA bundle takes ~0.1 s: do it once per process, not once per page."""
    return httpx.create_ssl_context()


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the connection pool on GuardedBackend; no proxies from the environment."""

    def __init__(self, *, max_connections: int = 10) -> None:
        super().__init__(verify=ssl_context(), trust_env=False)
        # HTTPTransport keeps its httpcore pool in _pool; swapping it is the one way to plug in a backend.
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context(), max_connections=max_connections,
                                             network_backend=GuardedBackend())


def guarded_transport() -> httpx.HTTPTransport:
    """The transport every crawler request uses (a plain one when private hosts are allowed)."""
    return httpx.HTTPTransport(verify=ssl_context(), trust_env=False) if allow_private() else GuardedTransport()
