"""`make dev` with no embeddings key serves the local model: the start-up banner and the detailed health report
say `local model`, and hybrid search finds a paraphrase through vectors, all without a key or a download.
Vectors of another size (another model) make it warn, not crash; `dev --revectorize` embeds them again."""

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


class Dev:
    """`python -m scripts dev` in a subprocess on a free port; `output` holds what it printed once stopped."""

    def __init__(self, data: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        shell = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "ENVIRONMENT": "development",
                 **env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scripts", "dev", "--port", str(self.port), "--data", str(data), *args],
            cwd=ROOT, env=shell, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
            if self.process.poll() is not None:
                self.stop()
                pytest.fail(f"make dev exited: {self.output}")
        else:
            self.stop()
            pytest.fail("make dev did not answer in 120 s")
        key = (data / "admin-key").read_text().strip()
        self.admin = httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def vectors(self) -> dict:
        return self.admin.get("/api/health").json()["checks"]["vectors"]

    def search(self, assistant_id: str) -> dict:
        found = self.admin.post("/api/search", json={"assistant_id": assistant_id, "mode": "hybrid",
                                                     "query": "I forgot my login credentials, how do I get back in?"})
        assert found.status_code == 200, found.text
        return found.json()

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        try:
            self.output = self.process.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.output = self.process.communicate()[0]
        return self.output


@pytest.fixture
def data_dir():
    data = Path(tempfile.mkdtemp(prefix="dialog-engine-dev-"))
    data.chmod(0o755)  # pgserver runs PostgreSQL as its own user when we are root
    yield data
    shutil.rmtree(data, ignore_errors=True)


def add_pages(dev: Dev) -> str:
    assistant = dev.admin.post("/api/assistants", json={"name": "Helper"})
    assert assistant.status_code == 201, assistant.text
    assistant_id = assistant.json()["id"]
    for title, text in (("Account security", "To reset your password, open Settings, choose Security and "
                                             "click Reset password."),
                        ("Billing", "Invoices are sent monthly by email as PDF files.")):
        added = dev.admin.post("/api/sources", json={"assistant_id": assistant_id, "kind": "text", "title": title,
                                                     "content": text})
        assert added.status_code == 202, added.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the ingest jobs run in the dev process, queued by its QStash
        sources = dev.admin.get("/api/sources", params={"assistant_id": assistant_id}).json()["data"]
        if len(sources) == 2 and all(s["status"] == "ready" for s in sources):
            break
        time.sleep(0.2)
    return assistant_id


def test_make_dev_says_local_model_and_revectorizes_vectors_of_another_size(data_dir) -> None:
    dev = Dev(data_dir, EMBEDDING_DIMENSIONS="128")  # a fresh database; as if another model embedded the pages
    try:
        vectors = dev.vectors()
        assert vectors["status"] == "ok" and vectors["detail"].startswith("local model wordllama-l2-supercat, 128 "
                                                                          "dimensions"), vectors
        assistant_id = add_pages(dev)
        found = dev.search(assistant_id)
        assert found["effective_mode"] == "hybrid"  # no key, yet hybrid: a paraphrase found through its vector
        top = found["results"][0]
        assert top["title"] == "Account security" and top["vector"]["rank"] == 1, found
    finally:
        output = dev.stop()
    assert "embeddings: local model wordllama-l2-supercat, 128 dimensions" in output, output

    dev = Dev(data_dir)  # the model's own 256: make dev still starts, says why, and search uses keywords
    try:
        vectors = dev.vectors()
        assert vectors["status"] == "down" and "EMBEDDING_DIMENSIONS is 256" in vectors["detail"], vectors
        assert all(r["vector"]["rank"] is None for r in dev.search(assistant_id)["results"])
    finally:
        output = dev.stop()
    assert "warning: EMBEDDING_DIMENSIONS is 256 but the stored vectors (chunks.embedding) have 128" in output
    assert "python -m scripts dev --revectorize" in output

    dev = Dev(data_dir, "--revectorize")
    try:
        vectors = dev.vectors()
        assert vectors["status"] == "ok" and vectors["detail"].startswith("local model wordllama-l2-supercat, 256 "
                                                                          "dimensions"), vectors
        top = dev.search(assistant_id)["results"][0]
        assert top["title"] == "Account security" and top["vector"]["rank"] == 1
    finally:
        output = dev.stop()
    assert "resizing chunks.embedding from 128 to 256 dimensions" in output, output
