"""Helpers for the browser tests: where Chromium is, how it starts, screenshots, a page server on another origin."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def screenshot(page: Any, name: str, full_page: bool = False) -> Path:
    """Save test-artifacts/<name>.png (git-ignored) for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


class PageServer:
    """A second origin serving one HTML page (set `html` per test), like a customer's website."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.responses import HTMLResponse
        from starlette.routing import Route

        from scripts._serve import serve_in_thread

        self.html = "<!doctype html><title>empty</title>"
        app = Starlette(routes=[Route("/", lambda request: HTMLResponse(self.html))])
        self.url, self.stop = serve_in_thread(app)
