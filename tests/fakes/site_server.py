"""A small static web site for the built-in crawler: pages with links, robots.txt, a sitemap, a PDF, and
knobs a test turns (change or remove a page, fail a page N times, redirect, answer slowly) and faults of the
whole site (down with 5xx, timing out, behind 401/403, single pages answering a status for good)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route


def html(title: str, body: str, links: list[str] = ()) -> str:  # type: ignore[assignment]
    nav = " ".join(f'<a href="{href}">{href}</a>' for href in links)
    return (f"<!doctype html><html><head><title>{title}</title></head><body><nav>{nav}</nav>"
            f"<main><h1>{title}</h1>{body}</main><footer>Acme Corp</footer></body></html>")


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose text pypdf extracts (written by hand: no PDF writer library needed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
            b"/Contents 5 0 R >>")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", page,
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def default_pages() -> dict[str, tuple[str, bytes | str]]:
    nav = ["/", "/pricing", "/docs/", "/about", "/private/admin", "/logo.png"]
    return {
        "/": ("text/html", html("Acme Home", "<p>Welcome to Acme, maker of fine anvils and rocket skates.</p>", nav)),
        "/pricing": ("text/html", html("Pricing", "<h2>Plans</h2><p>The starter plan costs 10 euros per month and "
                                       "includes five seats.</p><h2>Refunds</h2><p>Refunds are possible within 30 "
                                       "days of purchase, no questions asked.</p>", nav)),
        "/docs/": ("text/html", html("Documentation", "<p>Start with the installation guide.</p>",
                                     nav + ["/docs/install", "/docs/faq"])),
        "/docs/install": ("text/html", html("Installation", "<h2>Requirements</h2><p>The anvil installer needs "
                                            "Python 3.11 and a sturdy workbench.</p>", ["/docs/", "/docs/faq"])),
        "/docs/faq": ("text/html", html("FAQ", "<h2>Shipping</h2><p>We ship rocket skates worldwide within "
                                        "seven days.</p>", ["/docs/", "/docs/manual.pdf"])),
        "/docs/manual.pdf": ("application/pdf", minimal_pdf("The anvil manual explains maintenance of the anvil.")),
        "/about": ("text/html", html("About us", "<p>Acme was founded in 1949 in the desert.</p>", nav)),
        "/private/admin": ("text/html", html("Admin", "<p>Secret admin console.</p>")),
        "/logo.png": ("image/png", b"\x89PNG\r\n\x1a\n"),
        "/robots.txt": ("text/plain", "User-agent: *\nDisallow: /private/\n"),
    }


class StaticSite:
    """Serve `app`; `pages` maps a path to (content type, body); `hits` counts requests per path."""

    def __init__(self) -> None:
        self.pages = default_pages()
        self.failures: Counter[str] = Counter()   # path -> how many more requests answer 500
        self.redirects: dict[str, str] = {}       # path -> Location
        self.delays: dict[str, float] = {}        # path -> seconds before answering
        self.hits: Counter[str] = Counter()
        self.statuses: dict[str, int] = {}        # path -> status it answers for good (410, 500, 403, ...)
        self.outage: int | None = None            # every path (robots.txt and sitemaps too) answers this status
        self.slow_s = 0.0                         # every request waits this long first (a site timing out)
        self.url = ""
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/sitemap.xml", self.sitemap), Route("/{path:path}", self.page)])

    def reset(self) -> None:
        """Default pages, no scripted failures or faults, fresh hit counts."""
        self.pages = default_pages()
        for knob in (self.failures, self.redirects, self.delays, self.hits, self.statuses):
            knob.clear()
        self.outage, self.slow_s = None, 0.0

    async def _fault(self, path: str) -> Response | None:
        """The answer a site-wide fault or a page's fixed status gives instead of the content."""
        if self.slow_s:
            await asyncio.sleep(self.slow_s)
        status = self.outage or self.statuses.get(path)
        return Response(f"status {status}", status_code=status) if status else None

    def sitemap_xml(self, paths: list[str] | None = None) -> str:
        paths = paths if paths is not None else [p for p, (kind, _) in self.pages.items() if kind == "text/html"]
        urls = "".join(f"<url><loc>{self.url}{p}</loc><image:image><image:loc>{self.url}/logo.png</image:loc>"
                       f"</image:image></url>" for p in paths)
        return ('<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
                f'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">{urls}</urlset>')

    async def sitemap(self, request: Request) -> Response:
        self.hits["/sitemap.xml"] += 1
        if fault := await self._fault("/sitemap.xml"):
            return fault
        if "/sitemap.xml" in self.pages:
            kind, body = self.pages["/sitemap.xml"]
            return Response(body, media_type=kind)
        return Response(self.sitemap_xml(), media_type="application/xml")

    async def page(self, request: Request) -> Response:
        path = request.url.path
        with self._lock:
            self.hits[path] += 1
            failing = self.failures[path] > 0
            if failing:
                self.failures[path] -= 1
        if path in self.delays:
            await asyncio.sleep(self.delays[path])
        if fault := await self._fault(path):
            return fault
        if failing:
            return Response("temporarily broken", status_code=500)
        if path in self.redirects:
            return RedirectResponse(self.redirects[path], status_code=302)
        if path not in self.pages:
            return Response("not found", status_code=404)
        kind, body = self.pages[path]
        # The Content-Type exactly as listed: Starlette would add "; charset=utf-8" to text/* types, and a
        # page whose charset only its <meta> names must be served without one.
        return Response(body, headers={"content-type": kind})

    def stats(self) -> dict[str, Any]:
        return dict(self.hits)
