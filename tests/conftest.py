"""The root of the test suite, in two tiers:

- tests/unit/: pure functions, no stack; `make unit` runs them in seconds (tests/unit/conftest.py refuses a
  unit test that asks for the stack).
- everything else: integration tests against the real local stack (PostgreSQL, Redis, the Upstash and QStash
  stand-ins, the router over HTTP) and the protocol stand-ins in tests/fakes/.

This file only makes the environment safe (no developer's keys reach a test) and registers the fixture
plugins below; test modules request fixtures by name and import only helpers, never fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.llm.registry import PROVIDERS  # noqa: E402  (light: no SDK, no settings read)

# Settings must never come from a developer's own environment: no real keys in tests.
for _name in ("PINECONE_API_KEY", "FIRECRAWL_API_KEY", "SENTRY_DSN", "VECTOR_BACKEND", "REDIS_URL", "VERCEL_ENV",
              *(setting.upper() for spec in PROVIDERS.values() for setting in spec.settings)):
    os.environ.pop(_name, None)
os.environ["ENVIRONMENT"] = "test"

# Fixture plugins, imported after the environment above is clean. None is autouse, and none starts a server
# or the stack before a test requests it.
pytest_plugins = [
    "tests.plugins.stack",         # stack, engine, qstash
    "tests.fakes.fixtures",        # embeddings_api, pinecone_api, local_model
    "tests.fakes.chat_fixtures",   # openai_api, anthropic_api, redis_proxy
    "tests.fakes.crawl_fixtures",  # site, firecrawl_api, private_hosts_blocked
    "tests.fakes.backup_fixtures", # s3_url, backups
    "tests.fakes.pg_wire",  # pg_wire
    "tests.fakes.upstash_log",  # upstash_log
]

# Older spellings (`from tests.conftest import clear_caches`) keep working; the plugins' asserts still read well.
pytest.register_assert_rewrite("tests.plugins", "tests.fakes")
from tests.plugins.stack import CACHE_CLEARERS, TEMPLATE_DB, Engine, Stack, clear_caches  # noqa: E402

__all__ = ["CACHE_CLEARERS", "ROOT", "TEMPLATE_DB", "Engine", "Stack", "clear_caches"]
