"""Fixtures and factories for knowledge tests: the embeddings and Pinecone stand-ins, assistants and chunks.

A fixture plugin (tests/conftest.py registers it): request the fixtures by name; import only the helpers.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from scripts._serve import serve_in_thread
from tests.fakes.embeddings_server import FakeEmbeddings
from tests.fakes.pinecone_server import FakePinecone
from tests.plugins import stack


def _clear_embedding_client() -> None:
    from shared.knowledge import embeddings

    embeddings.clear_caches()


def _conftest() -> Any:
    """The stack plugin's module (clear_caches, CACHE_CLEARERS, Engine): the name tests used before it moved."""
    return stack


if _clear_embedding_client not in stack.CACHE_CLEARERS:
    stack.CACHE_CLEARERS.append(_clear_embedding_client)


_servers: dict[str, Any] = {}


def _serve_once(name: str, make: Any) -> Any:
    """One stand-in per test process, started on first use (daemon threads end with the process)."""
    if name not in _servers:
        fake = make()
        url, _ = serve_in_thread(fake.app)
        _servers[name] = (fake, url)
    return _servers[name]


@pytest.fixture
def embeddings_api(engine: Any, monkeypatch: pytest.MonkeyPatch) -> FakeEmbeddings:
    """The OpenAI embeddings stand-in, configured for this test (fresh request log, no scripted failures)."""
    fake, url = _serve_once("embeddings", FakeEmbeddings)
    fake.requests.clear()
    fake._failures.clear()
    fake.outage_after = None
    fake.delay_s = 0.0
    monkeypatch.setenv("OPENAI_API_KEY", fake.api_key)
    monkeypatch.setenv("EMBEDDING_BASE_URL", f"{url}/v1")
    stack.clear_caches()
    return fake


@pytest.fixture
def local_model(engine: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The local stack's real embedding model (scripts/local_embeddings.py) as this test's embeddings API, as
    `make dev` uses it; this test's database is migrated again, which sizes chunks.embedding to its 256
    dimensions. Returns the model's base URL."""
    for name, value in engine.stack.local.embeddings_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    stack.clear_caches()
    from shared.ops.migrate import migrate

    migrate(engine.dsn)
    return engine.stack.local.embeddings_url


@pytest.fixture
def local_e5(engine: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The local stack's multilingual-e5-small as this test's embeddings API (its engine_settings():
    384 dimensions, E5's "query: " / "passage: " prefixes); the database is migrated to that size."""
    for name, value in engine.stack.local.embeddings_env("multilingual-e5-small").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    stack.clear_caches()
    from shared.ops.migrate import migrate

    migrate(engine.dsn)
    return engine.stack.local.embeddings_url


@pytest.fixture
def pinecone_api(engine: Any, monkeypatch: pytest.MonkeyPatch) -> FakePinecone:
    """The Pinecone stand-in with an empty 1536-dimension cosine index, selected as the vector backend."""
    fake, url = _serve_once("pinecone", FakePinecone)
    fake.bind(url)
    fake.indexes.clear()
    fake.data.clear()
    fake.requests.clear()
    monkeypatch.setenv("PINECONE_API_KEY", fake.api_key)
    monkeypatch.setenv("PINECONE_CONTROLLER_HOST", url)
    monkeypatch.setenv("VECTOR_BACKEND", "pinecone")
    monkeypatch.delenv("PINECONE_HOST", raising=False)
    stack.clear_caches()
    from pinecone import Pinecone

    Pinecone(api_key=fake.api_key).create_index(name="dialog-engine", dimension=1536, metric="cosine",
                                                spec={"serverless": {"cloud": "aws", "region": "us-east-1"}})
    return fake


def make_assistant(conn: Any, workspace_id: str, name: str = "Helper", language: str = "english") -> str:
    """An assistant on the built-in template, with no sources yet."""
    row = conn.execute("INSERT INTO assistants (workspace_id, name, template_id) VALUES (%s, %s, 'default') "
                       "RETURNING id", (workspace_id, name)).fetchone()
    return row["id"]


def add_page(conn: Any, workspace_id: str, assistant_id: str, title: str, sections: list[tuple[str, str]],
             url: str | None = None, language: str = "english", source_id: str | None = None) -> list[dict[str, Any]]:
    """One source (unless given), one document and a chunk per (heading, text) section; returns the chunk rows."""
    if source_id is None:
        source_id = conn.execute("INSERT INTO sources (workspace_id, assistant_id, kind, title, language) "
                                 "VALUES (%s, %s, 'text', %s, %s) RETURNING id",
                                 (workspace_id, assistant_id, title, language)).fetchone()["id"]
    url = url or f"https://docs.example.com/{title.lower().replace(' ', '-')}"
    document_id = conn.execute("INSERT INTO documents (workspace_id, assistant_id, source_id, url, title, status) "
                               "VALUES (%s, %s, %s, %s, %s, 'ready') RETURNING id",
                               (workspace_id, assistant_id, source_id, url, title)).fetchone()["id"]
    rows = []
    for ordinal, (heading, text) in enumerate(sections):
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        rows.append(conn.execute("""
            INSERT INTO chunks (id, workspace_id, assistant_id, source_id, document_id, ordinal, title, heading_path,
                                url, text, token_count, content_hash, language)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::regconfig)
            RETURNING id, workspace_id, assistant_id, source_id, document_id, ordinal, title, heading_path, text""",
            (f"{document_id}_{ordinal}_{digest}", workspace_id, assistant_id, source_id, document_id, ordinal, title,
             heading, url, text, len(text.split()), digest, language)).fetchone())
    return rows


# A small help-centre corpus and questions whose answer is known (heading of the right chunk).
PAGES = [
    ("Account security", [
        ("Resetting your password", ("To reset your password, open Settings, choose Security and click Reset "
                                     "password. We email you a link that stays valid for 24 hours.")),
        ("Two-factor authentication", "Turn on two-factor authentication with an authenticator app under Security."),
    ]),
    ("Billing", [
        ("Invoices", "Invoices are sent monthly by email. Download past invoices as PDF files from the Billing page."),
        ("Payment methods", "We accept credit cards and SEPA bank transfers."),
    ]),
    ("Chat widget", [
        ("Installation", ("Embed the chat widget by adding one script tag to your site. Set data-assistant to "
                          "your assistant id and the widget shows in the corner.")),
    ]),
    ("Data retention", [
        ("Conversations", ("Conversations are kept for 90 days, then deleted automatically. Export them from the "
                           "Conversations page before then.")),
    ]),
    ("Support", [("Opening hours", "Support answers from Monday to Friday between 9:00 and 17:00 CET.")]),
]

QUESTIONS = [
    ("How do I reset my password?", "Resetting your password"),
    ("Can I pay with a credit card?", "Payment methods"),
    ("How long are conversations stored?", "Conversations"),
    ("Where do I download an invoice PDF?", "Invoices"),
    ("install the widget script on my website", "Installation"),
]


def load_corpus(conn: Any, workspace_id: str, assistant_id: str, embed: bool = True) -> list[dict[str, Any]]:
    rows = [row for title, sections in PAGES for row in add_page(conn, workspace_id, assistant_id, title, sections)]
    if embed:
        from shared.knowledge.vectors.indexing import index_chunks

        assert index_chunks(conn, rows) == len(rows)
    return rows
