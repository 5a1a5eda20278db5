"""A stand-in for the Firecrawl v2 API (PROTOCOLS.md §7), so firecrawl-py runs unchanged against it.

POST /v2/scrape, POST /v2/crawl (then webhook events crawl.started / crawl.page / crawl.completed,
signed with X-Firecrawl-Signature when a secret is set), GET /v2/crawl/{id} (paginated with `next`),
DELETE /v2/crawl/{id}. The "web" it crawls is `pages`: url -> (title, markdown, status code).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
import uuid
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PAGE_SIZE = 2  # small, so the SDK's pagination over `next` is exercised


class FakeFirecrawl:
    def __init__(self, api_key: str = "fc-test-key") -> None:
        self.api_key = api_key
        self.pages: dict[str, tuple[str, str, int]] = {}
        self.crawls: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.webhook_secret: str | None = None
        self.send_webhooks = True
        self.polls_before_done = 0      # GET /v2/crawl/{id} answers "scraping" this many times first
        self.webhook_replies: list[int] = []
        self.final_status = "completed"  # how a crawl ends: "failed" for a crawl that broke off
        self.scraped_limit: int | None = None  # a crawl that ends after this many of its pages (a partial crawl)
        self.start_delay_s = 0.0          # POST /v2/crawl answers after this long (lets duplicate jobs overlap)
        self.url = ""
        self.app = Starlette(routes=[
            Route("/v2/scrape", self.scrape, methods=["POST"]),
            Route("/v2/crawl", self.start_crawl, methods=["POST"]),
            Route("/v2/crawl/{crawl_id}", self.crawl_status, methods=["GET"]),
            Route("/v2/crawl/{crawl_id}", self.cancel, methods=["DELETE"]),
        ])

    def reset(self) -> None:
        self.pages.clear()
        self.crawls.clear()
        self.requests.clear()
        self.webhook_replies.clear()
        self.webhook_secret, self.send_webhooks, self.polls_before_done = None, True, 0
        self.final_status, self.scraped_limit, self.start_delay_s = "completed", None, 0.0

    def document(self, url: str) -> dict[str, Any]:
        title, markdown, status = self.pages.get(url, ("", "", 404))
        return {"markdown": markdown, "metadata": {"title": title, "sourceURL": url, "url": url, "statusCode": status,
                                                   "contentType": "text/html"}}

    def _auth(self, request: Request) -> JSONResponse | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"success": False, "error": "Unauthorized: Invalid token"}, status_code=401)
        return None

    async def scrape(self, request: Request) -> JSONResponse:
        if denied := self._auth(request):
            return denied
        body = await request.json()
        self.requests.append(("scrape", body["url"], body))
        return JSONResponse({"success": True, "data": self.document(body["url"])})

    async def start_crawl(self, request: Request) -> JSONResponse:
        if denied := self._auth(request):
            return denied
        body = await request.json()
        if self.start_delay_s:
            await asyncio.sleep(self.start_delay_s)
        self.requests.append(("crawl", body["url"], body))
        crawl_id = str(uuid.uuid4())
        urls = [u for u in self.pages if u.startswith(body["url"].rstrip("/"))][: int(body.get("limit") or 10_000)]
        self.crawls[crawl_id] = {"urls": urls[:self.scraped_limit], "total": len(urls), "polls": 0,
                                 "status": "scraping", "final": self.final_status, "body": body}
        if self.send_webhooks and isinstance(body.get("webhook"), dict):
            threading.Thread(target=self._webhooks, args=(crawl_id, body["webhook"]), daemon=True).start()
        return JSONResponse({"success": True, "id": crawl_id, "url": f"{self.url}/v2/crawl/{crawl_id}"})

    async def crawl_status(self, request: Request) -> JSONResponse:
        if denied := self._auth(request):
            return denied
        crawl = self.crawls.get(request.path_params["crawl_id"])
        if crawl is None:
            return JSONResponse({"success": False, "error": "Job not found"}, status_code=404)
        skip = int(request.query_params.get("skip", 0))
        if skip == 0:
            crawl["polls"] += 1
        done = crawl["status"] == "cancelled" or crawl["polls"] > self.polls_before_done
        final = crawl.get("final", "completed")  # crawls some tests seed by hand name no outcome
        status = crawl["status"] if crawl["status"] == "cancelled" else (final if done else "scraping")
        urls = crawl["urls"] if done else crawl["urls"][:1]
        data = [self.document(u) for u in urls[skip:skip + PAGE_SIZE]]
        reply: dict[str, Any] = {"success": True, "status": status, "completed": len(urls),
                                 "total": crawl.get("total", len(urls)), "creditsUsed": len(urls),
                                 "expiresAt": "2099-01-01T00:00:00Z", "data": data}
        if skip + PAGE_SIZE < len(urls):
            reply["next"] = f"{self.url}/v2/crawl/{request.path_params['crawl_id']}?skip={skip + PAGE_SIZE}"
        return JSONResponse(reply)

    async def cancel(self, request: Request) -> JSONResponse:
        if denied := self._auth(request):
            return denied
        crawl = self.crawls.get(request.path_params["crawl_id"])
        if crawl is None:
            return JSONResponse({"success": False, "error": "Job not found"}, status_code=404)
        crawl["status"] = "cancelled"
        return JSONResponse({"success": True, "status": "cancelled"})

    def event(self, crawl_id: str, kind: str, data: list[Any],
              metadata: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """The body and headers Firecrawl would POST for one event."""
        body = json.dumps({"success": True, "type": kind, "id": crawl_id, "webhookId": str(uuid.uuid4()),
                           "data": data, "metadata": metadata}).encode()
        headers = {"content-type": "application/json"}
        if self.webhook_secret:
            digest = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
            headers["x-firecrawl-signature"] = f"sha256={digest}"
        return body, headers

    def _webhooks(self, crawl_id: str, webhook: dict[str, Any]) -> None:
        time.sleep(0.3)  # like the real service: events arrive after the crawl was accepted
        crawl = self.crawls[crawl_id]
        metadata = webhook.get("metadata") or {}
        events = [("crawl.started", [])] + [("crawl.page", [self.document(u)]) for u in crawl["urls"]]
        events.append(("crawl.completed" if crawl["final"] == "completed" else "crawl.failed", []))
        with httpx.Client(timeout=10) as client:
            for kind, data in events:
                body, headers = self.event(crawl_id, kind, data, metadata)
                try:
                    self.webhook_replies.append(client.post(webhook["url"], content=body, headers=headers).status_code)
                except httpx.HTTPError:
                    self.webhook_replies.append(0)
