"""Browser fixtures: Debian's Chromium driven by Playwright (its own browser download is not used), and a page
server on a second origin for the widget."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.helpers import CHROMIUM, CHROMIUM_ARGS, PageServer


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        # Never a skip: `make test` installs it (scripts/ensure-chromium), so a missing browser is an error.
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run scripts/ensure-chromium (make test does)")
    from playwright import sync_api  # requirements-dev.txt
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture
def browser(playwright: Any) -> Iterator[Callable[..., Any]]:
    """browser(**context_options) -> a fresh Chromium context with its own user-data-dir; closed after the test."""
    opened: list[tuple[Any, str]] = []

    def launch(**options: Any) -> Any:
        profile = tempfile.mkdtemp(prefix="dialog-engine-chromium-")
        options.setdefault("viewport", {"width": 1280, "height": 800})
        options.setdefault("locale", "en-US")
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, **options)
        context.set_default_timeout(15_000)
        opened.append((context, profile))
        return context

    yield launch
    for context, profile in opened:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.stop()
