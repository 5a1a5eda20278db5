"""Serve every api/ function at the path vercel.json gives it, plus public/, from one ASGI app.

Used by `make dev`, the tests and the Docker image, so all three route exactly like Vercel:
`/api/<file>` goes to api/<file>.py, a `rewrites` entry maps sub-paths to a file, the rest is public/.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

ROOT = Path(__file__).resolve().parent.parent


def function_names(root: Path = ROOT) -> list[str]:
    """api/*.py files that Vercel turns into functions (names starting with _ or . are helpers)."""
    return sorted(p.stem for p in (root / "api").glob("*.py") if not p.name.startswith(("_", ".")))


def vercel_pattern(source: str) -> re.Pattern[str]:
    """A vercel.json `source` (path-to-regexp: `:name`, `:name*`, `(.*)`) as a regular expression."""
    parts = []
    for token in re.split(r"(:[A-Za-z_]\w*\*?|\(\.\*\))", source):
        if token == "(.*)" or (token.startswith(":") and token.endswith("*")):
            parts.append(".*")
        elif token.startswith(":"):
            parts.append("[^/]+")
        else:
            parts.append(re.escape(token))
    return re.compile("^" + "".join(parts) + "$")


def load_rewrites(root: Path = ROOT) -> list[tuple[re.Pattern[str], str]]:
    config = json.loads((root / "vercel.json").read_text())
    return [(vercel_pattern(r["source"]), r["destination"]) for r in config.get("rewrites", [])]


class Router:
    """One ASGI app in front of all functions; each function app sees the full public path, as on Vercel."""

    def __init__(self, root: Path = ROOT) -> None:
        self.apps: dict[str, Any] = {
            f"/api/{name}": importlib.import_module(f"api.{name}").app for name in function_names(root)}
        self.rewrites = load_rewrites(root)
        self.static = StaticFiles(directory=root / "public", html=True, check_dir=False)

    def resolve(self, path: str) -> str | None:
        if path in self.apps:
            return path
        for pattern, destination in self.rewrites:
            if pattern.match(path) and destination in self.apps:
                return destination
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        target = self.resolve(scope["path"])
        if target:
            return await self.apps[target](scope, receive, send)
        if scope["path"].startswith("/api/"):
            return await _not_found(scope, receive, send)
        try:
            await self.static(scope, receive, send)
        except HTTPException as exc:  # StaticFiles raises 404 / 405; no Starlette app here turns it into a response
            if exc.status_code == 404:
                return await _not_found(scope, receive, send)
            from shared.core.http import HTTP_CODES, json_error

            await json_error(exc.status_code, HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail),
                             headers=exc.headers)(scope, receive, send)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    from shared.core.http import json_error

    what = "function serves" if scope["path"].startswith("/api/") else "file is at"
    await json_error(404, "not_found", f"No {what} {scope['path']}.")(scope, receive, send)


def create_router() -> Any:
    """The router with the security headers and X-Request-Id also on its own 404s and on public/ files, and CORS
    on the widget's message catalogues (public/i18n/*.json; vercel.json sets the same header on Vercel)."""
    from shared.core.http import SecurityHeadersMiddleware, WidgetCorsMiddleware
    from shared.core.request_id import RequestIdMiddleware

    return RequestIdMiddleware(WidgetCorsMiddleware(SecurityHeadersMiddleware(Router())))
