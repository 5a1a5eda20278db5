"""`make dev` with no embeddings key serves the local model: the start-up banner and the detailed health report
say `local model`, and hybrid search finds a paraphrase through vectors, all without a key or a download."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from scripts.cmd_dev import dev_environment
from tests.conftest import ROOT
from tests.test_dev_env import free_port

LOCAL = {"EMBEDDING_BASE_URL": "http://127.0.0.1:1003/v1", "EMBEDDING_MODEL": "wordllama-l2-supercat",
         "EMBEDDING_DIMENSIONS": "256"}


NOT_SET = {name: None for name in LOCAL}


@pytest.mark.parametrize(("shell", "dotenv", "expected"), [
    ({}, {}, LOCAL),                                                             # no key: the local model
    ({}, {"EMBEDDING_DIMENSIONS": "512", "EMBEDDING_MODEL": "text-embedding-3-small"}, LOCAL),  # .env's: OpenAI's
    ({"EMBEDDING_DIMENSIONS": "128"}, {}, {**LOCAL, "EMBEDDING_DIMENSIONS": None}),  # the shell's size stays
    ({}, {"OPENAI_API_KEY": "sk-dotenv"}, NOT_SET),                              # a key: OpenAI embeds
    ({"EMBEDDING_BASE_URL": "http://127.0.0.1:9/v1"}, {}, NOT_SET),              # an own embeddings server
])
def test_make_dev_uses_the_local_model_only_without_an_embeddings_api(shell, dotenv, expected) -> None:
    env = dev_environment({}, shell, dotenv, local_embeddings=LOCAL)
    assert {name: env.get(name) for name in LOCAL} == expected


def test_make_dev_says_local_model_and_hybrid_search_works_with_no_key() -> None:
    data = Path(tempfile.mkdtemp(prefix="dialog-engine-dev-"))
    data.chmod(0o755)  # pgserver runs PostgreSQL as its own user when we are root
    port = free_port()
    shell = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "ENVIRONMENT": "development"}
    dev = subprocess.Popen([sys.executable, "-m", "scripts", "dev", "--port", str(port), "--data", str(data)],
                           cwd=ROOT, env=shell, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
            assert dev.poll() is None, dev.communicate()[0]
        else:
            pytest.fail("make dev did not answer in 90 s")
        key = (data / "admin-key").read_text().strip()
        admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        vectors = admin.get("/api/health").json()["checks"]["vectors"]
        assert vectors["status"] == "ok" and vectors["detail"].startswith("local model wordllama-l2-supercat"), vectors

        assistant = admin.post("/api/assistants", json={"name": "Helper"})
        assert assistant.status_code == 201, assistant.text
        assistant_id = assistant.json()["id"]
        for title, text in (("Account security", "To reset your password, open Settings, choose Security and "
                                                 "click Reset password."),
                            ("Billing", "Invoices are sent monthly by email as PDF files.")):
            added = admin.post("/api/sources", json={"assistant_id": assistant_id, "kind": "text", "title": title,
                                                     "content": text})
            assert added.status_code == 202, added.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the ingest jobs run in the dev process, queued by its QStash
            sources = admin.get("/api/sources", params={"assistant_id": assistant_id}).json()["data"]
            if len(sources) == 2 and all(s["status"] == "ready" for s in sources):
                break
            time.sleep(0.2)
        found = admin.post("/api/search", json={"assistant_id": assistant_id, "mode": "hybrid",
                                                "query": "I forgot my login credentials, how do I get back in?"})
        assert found.status_code == 200, found.text
        assert found.json()["effective_mode"] == "hybrid"
        top = found.json()["results"][0]
        assert top["title"] == "Account security" and top["vector"]["rank"] == 1, found.json()
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            output = dev.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            dev.kill()
            output = dev.communicate()[0]
        shutil.rmtree(data, ignore_errors=True)
    assert "embeddings: local model wordllama-l2-supercat, 256 dimensions" in output, output
