"""SSRF guard: with private hosts not allowed (production), loopback, private, link-local, metadata and
other special addresses are refused with a clear error, by name or number, directly or by a redirect,
and also when DNS changes its answer between the check and the connection."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.knowledge.crawl import CrawlError
from shared.knowledge.crawl.fetch import fetch_page, get, new_client
from shared.knowledge.crawl.ssrf import BlockedURL, blocked_reason, check_url
from tests.fakes.crawl_fixtures import knowledge_setup
from tests.plugins.stack import clear_caches

PUBLIC_IP = "93.184.216.34"  # a public address; the fake DNS below routes it to the local test site


@pytest.fixture
def blocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Production settings for tests that need no database."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused/unused")
    monkeypatch.setenv("ALLOW_PRIVATE_HOSTS", "false")
    clear_caches()
    yield
    monkeypatch.undo()
    clear_caches()


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names -> answers (one per lookup, the last repeats); PUBLIC_IP connections reach 127.0.0.1.

    This stands in for the internet: a public host whose server we control, on a machine without one.
    """
    answers: dict[str, list[str]] = {}
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            address = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        host, port = address
        return real_connect(("127.0.0.1" if host == PUBLIC_IP else host, port), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return answers


@pytest.mark.parametrize(("url", "reason"), [
    ("http://127.0.0.1/", "loopback"),
    ("http://10.0.0.1/admin", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://localhost:8080/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[fd00::1]/", "private"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://2130706433/", "loopback"),        # 127.0.0.1 written as one number
    ("http://0x7f.1/", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://192.168.1.20/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://100.64.0.1/", "non-public"),      # carrier-grade NAT
    ("http://224.0.0.1/", "multicast"),
    ("https://[fe80::1]/", "link-local"),
    ("http://[fec0::1]/", "site-local"),          # deprecated site-local IPv6
    ("http://[feff::1]/", "site-local"),
    ("http://192.0.0.9/", "non-public"),         # IETF protocol assignments
    ("http://192.88.99.1/", "non-public"),       # 6to4 relay anycast
    ("http://198.18.0.1/", "private"),           # benchmarking
    ("http://[3fff::1]/", "non-public"),          # IPv6 documentation (RFC 9637)
    ("http://[2001:db8::1]/", "private"),         # IPv6 documentation
    ("http://[::ffff:10.0.0.1]/", "private"),     # IPv4-mapped
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[2002:a00:1::1]/", "private"),       # 6to4 around 10.0.0.1
    ("http://[2002:a9fe:a9fe::1]/", "metadata"),  # 6to4 around the metadata service
    ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),  # NAT64 around the metadata service
    ("http://[64:ff9b:1::a00:1]/", "reserved"),  # local-use NAT64
    ("http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/", "private"),  # Teredo
    ("http://[::127.0.0.1]/", "reserved"),        # IPv4-compatible (deprecated)
])
def test_private_and_special_addresses_are_refused(blocked, url: str, reason: str) -> None:
    with pytest.raises(BlockedURL) as refused:
        check_url(url)
    assert refused.value.code == "private_address" and not refused.value.retryable
    assert f"not public ({reason})" in refused.value.message


@pytest.mark.parametrize(("url", "code"), [
    ("ftp://example.com/file", "unsupported_scheme"),
    ("file:///etc/passwd", "unsupported_scheme"),
    ("gopher://example.com/", "unsupported_scheme"),
    ("http://user:secret@example.com/", "credentials_in_url"),
    ("http:///no-host", "invalid_url"),
    ("http://example.com:99999/", "invalid_url"),
])
def test_other_schemes_and_odd_forms_are_refused(blocked, url: str, code: str) -> None:
    with pytest.raises(BlockedURL) as refused:
        check_url(url)
    assert refused.value.code == code


def test_public_addresses_pass_and_private_ones_pass_only_when_allowed(monkeypatch, blocked) -> None:
    assert blocked_reason(ipaddress.ip_address(PUBLIC_IP)) is None
    assert blocked_reason(ipaddress.ip_address("2606:4700::1111")) is None
    monkeypatch.setenv("ALLOW_PRIVATE_HOSTS", "true")
    clear_caches()
    assert check_url("http://127.0.0.1:9/") == "http://127.0.0.1:9/"
    with pytest.raises(BlockedURL):  # the scheme rule holds even then
        check_url("file:///etc/passwd")


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What `make dev` and the test stack run with when ALLOW_PRIVATE_HOSTS is not set."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused/unused")
    monkeypatch.setenv("ALLOW_PRIVATE_HOSTS", "loopback")
    clear_caches()
    yield
    monkeypatch.undo()
    clear_caches()


def test_loopback_mode_lets_only_loopback_through(loopback_only) -> None:
    for url in ("http://127.0.0.1:9/", "http://127.5.6.7/", "http://[::1]:9/", "http://localhost:9/",
                "http://[::ffff:127.0.0.1]/"):
        assert check_url(url) == url
    for url, reason in (("http://10.0.0.1/", "private"), ("http://192.168.1.20/", "private"),
                        ("http://169.254.169.254/", "metadata"), ("http://[fd00:ec2::254]/", "metadata"),
                        ("http://[fe80::1]/", "link-local"), ("http://[fec0::1]/", "site-local"),
                        ("http://100.64.0.1/", "non-public"), ("http://0.0.0.0/", "unspecified"),
                        # loopback wrapped in 6to4 / NAT64 leaves the machine first: not loopback
                        ("http://[2002:7f00:1::1]/", "loopback"), ("http://[64:ff9b::7f00:1]/", "loopback")):
        with pytest.raises(BlockedURL) as refused:
            check_url(url)
        assert f"not public ({reason})" in refused.value.message, url


def test_loopback_mode_still_checks_at_connect_time(loopback_only, site, fake_dns) -> None:
    port = site.url.rsplit(":", 1)[1]
    with new_client() as client:
        assert get(client, f"{site.url}/pricing").status == 200  # the local test site
        fake_dns["lan.test"] = [PUBLIC_IP, "10.0.0.1"]  # rebinding into the LAN
        with pytest.raises(BlockedURL) as refused:
            get(client, f"http://lan.test:{port}/pricing")
    assert "private" in refused.value.message
    assert site.hits["/pricing"] == 1


@pytest.mark.parametrize(("value", "mode"), [("true", "true"), ("1", "true"), ("yes", "true"), ("false", "false"),
                                             ("0", "false"), ("", "false"), ("loopback", "loopback"),
                                             ("LOOPBACK", "loopback")])
def test_allow_private_hosts_accepts_booleans_and_loopback(monkeypatch, value: str, mode: str) -> None:
    from shared.core.settings import Settings

    monkeypatch.setenv("ALLOW_PRIVATE_HOSTS", value)
    assert Settings().allow_private_hosts == mode


def test_allow_private_hosts_refuses_other_values(monkeypatch) -> None:
    from pydantic import ValidationError

    from shared.core.settings import Settings

    monkeypatch.setenv("ALLOW_PRIVATE_HOSTS", "lan")
    with pytest.raises(ValidationError, match="allow_private_hosts"):
        Settings()


def test_a_redirect_into_a_private_address_is_refused(blocked, site, fake_dns) -> None:
    port = site.url.rsplit(":", 1)[1]
    fake_dns["public.test"] = [PUBLIC_IP]
    site.redirects["/old-pricing"] = "/pricing"
    site.redirects["/to-metadata"] = "http://169.254.169.254/latest/meta-data/"
    site.redirects["/to-loopback"] = f"http://127.0.0.1:{port}/pricing"
    site.redirects["/to-internal-name"] = f"http://localhost:{port}/pricing"

    # A public host redirecting within itself works (so the refusals below are the guard's doing) ...
    page = fetch_page(f"http://public.test:{port}/old-pricing")
    assert page.title == "Pricing" and "30 days" in page.markdown
    # ... a redirect into the metadata service, loopback or a name that resolves there does not.
    for path, reason in (("/to-metadata", "metadata"), ("/to-loopback", "loopback"),
                         ("/to-internal-name", "loopback")):
        with pytest.raises(BlockedURL) as refused:
            fetch_page(f"http://public.test:{port}{path}")
        assert refused.value.code == "private_address" and reason in refused.value.message
    assert site.hits["/pricing"] == 1  # only the allowed redirect reached it


def test_dns_rebinding_is_caught_when_connecting(blocked, site, fake_dns) -> None:
    port = site.url.rsplit(":", 1)[1]
    # The check sees a public address, the connection would get loopback: the guarded transport refuses.
    fake_dns["rebind.test"] = [PUBLIC_IP, "127.0.0.1"]
    with new_client() as client, pytest.raises(BlockedURL) as refused:
        get(client, f"http://rebind.test:{port}/pricing")
    assert "loopback" in refused.value.message
    assert site.hits["/pricing"] == 0


def test_dns_failure_is_a_retryable_error(blocked, fake_dns) -> None:
    with pytest.raises(CrawlError) as failed:
        check_url("http://does-not-exist.invalid/")
    assert failed.value.code == "host_not_found" and failed.value.retryable


def test_the_api_refuses_private_source_urls_with_a_clear_error(engine, site, private_hosts_blocked) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    cases = {f"{site.url}/": "private_address", "http://localhost/docs": "private_address",
             "http://169.254.169.254/": "private_address", "http://10.0.0.1/": "private_address",
             "ftp://example.com/": "unsupported_scheme"}
    for url, code in cases.items():
        for kind in ("url", "site", "sitemap"):
            reply = client.post("/api/sources", json={"assistant_id": assistant_id, "kind": kind, "url": url})
            assert reply.status_code == 422, (url, reply.text)
            error = reply.json()["error"]
            assert error["code"] == code and error["details"][0]["field"] == "url", error
    with engine.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM sources").fetchone()["n"] == 0


def test_firecrawl_is_never_pointed_at_a_private_address(engine, firecrawl_api, private_hosts_blocked) -> None:
    from shared.knowledge.crawl import firecrawl

    with pytest.raises(BlockedURL):
        firecrawl.scrape("http://10.0.0.1/")
    with pytest.raises(BlockedURL):
        firecrawl.start_crawl(url="http://169.254.169.254/", limit=5, include=[], exclude=[], max_depth=1,
                              webhook_url="https://example.com/hook", metadata={})
    assert firecrawl_api.requests == []


def test_redirect_chains_are_bounded(engine, site) -> None:
    site.redirects["/loop"] = "/loop"
    with httpx.Client() as _, new_client() as client, pytest.raises(CrawlError) as failed:
        get(client, f"{site.url}/loop")
    assert failed.value.code == "too_many_redirects"
