"""`make dev`: a DATABASE_URL (and Upstash/QStash settings) set in the shell wins over the local stack's, so a
fault proxy can sit in front of them; .env never replaces the stack's addresses; the crawler reaches loopback
test sites but not private ranges unless ALLOW_PRIVATE_HOSTS says otherwise."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from scripts.cmd_dev import dev_environment
from tests.conftest import ROOT
from tests.fakes.fixtures import make_assistant
from tests.fakes.tcp_proxy import TcpProxy, postgres_target

STACK = {"DATABASE_URL": "postgresql://stack/db", "UPSTASH_REDIS_REST_URL": "http://127.0.0.1:1001",
         "UPSTASH_REDIS_REST_TOKEN": "stack-token", "QSTASH_URL": "http://127.0.0.1:1002",
         "QSTASH_TOKEN": "stack-qstash", "CRON_SECRET": "stack-cron", "PUBLIC_URL": "http://localhost:3000"}


def test_the_shells_database_redis_and_qstash_urls_win_over_the_stack() -> None:
    shell = {"DATABASE_URL": "postgresql://proxy:6432/db", "UPSTASH_REDIS_REST_URL": "http://127.0.0.1:2001",
             "QSTASH_URL": "http://127.0.0.1:2002"}
    env = dev_environment(STACK, shell, {})
    assert {name: env.get(name) for name in shell} == {name: None for name in shell}  # left as the shell has them
    assert env["UPSTASH_REDIS_REST_TOKEN"] == "stack-token"  # what the shell did not set still comes from the stack
    assert env["QSTASH_TOKEN"] == "stack-qstash" and env["CRON_SECRET"] == "stack-cron"


def test_dotenv_never_replaces_the_stacks_addresses_but_fills_in_the_rest() -> None:
    dotenv = {"DATABASE_URL": "postgresql://production/db", "QSTASH_URL": "https://qstash.upstash.io",
              "OPENAI_API_KEY": "sk-from-dotenv", "CRON_SECRET": "prod-cron"}
    env = dev_environment(STACK, {}, dotenv)
    assert env["DATABASE_URL"] == "postgresql://stack/db" and env["QSTASH_URL"] == "http://127.0.0.1:1002"
    assert env["CRON_SECRET"] == "stack-cron" and env["OPENAI_API_KEY"] == "sk-from-dotenv"
    # The shell beats .env for everything else too.
    assert "OPENAI_API_KEY" not in dev_environment(STACK, {"OPENAI_API_KEY": "sk-shell"}, dotenv)


def test_a_plain_redis_from_the_shell_replaces_the_upstash_stand_in() -> None:
    env = dev_environment(STACK, {"REDIS_URL": "redis://127.0.0.1:6380/0"}, {})
    assert env["UPSTASH_REDIS_REST_URL"] == env["UPSTASH_REDIS_REST_TOKEN"] == ""


@pytest.mark.parametrize(("shell", "dotenv", "expected"), [
    ({}, {}, "loopback"),                                             # unset: loopback test sites only
    ({"ALLOW_PRIVATE_HOSTS": "true"}, {}, None),                      # the shell's value stays
    ({"ALLOW_PRIVATE_HOSTS": "false"}, {"ALLOW_PRIVATE_HOSTS": "true"}, None),
    ({}, {"ALLOW_PRIVATE_HOSTS": "false"}, "false"),                  # set in .env: kept
    ({}, {"ALLOW_PRIVATE_HOSTS": "true"}, "true"),
    ({"ENVIRONMENT": "production"}, {}, None),                        # production refuses anything but false
    ({}, {"VERCEL_ENV": "production"}, None),
])
def test_allow_private_hosts_defaults_to_loopback_and_an_explicit_value_wins(shell, dotenv, expected) -> None:
    assert dev_environment(STACK, shell, dotenv).get("ALLOW_PRIVATE_HOSTS") == expected


def free_port() -> int:
    """A free port below the ephemeral range: `make dev` starts stand-ins on ephemeral ports (port 0) before it
    binds its own, and one of them could take a port the kernel had just handed out here."""
    for _ in range(200):
        port = random.randint(20_000, 32_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000")


@pytest.fixture
def explicit_database(stack) -> Iterator[str]:
    """An empty database of the test stack's PostgreSQL: for `make dev`, someone else's server."""
    name = f"dev_explicit_{os.getpid()}"
    with psycopg.connect(stack.admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield stack.dsn(name)
    finally:
        with psycopg.connect(stack.admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_make_dev_runs_against_an_explicit_database_behind_a_proxy(explicit_database, site) -> None:
    proxy = TcpProxy(postgres_target(explicit_database))
    database = urlsplit(explicit_database).path.lstrip("/")
    through_proxy = f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}"
    data = Path(tempfile.mkdtemp(prefix="dialog-engine-dev-"))
    data.chmod(0o755)  # pgserver runs PostgreSQL as its own user when we are root
    port = free_port()
    shell = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "ENVIRONMENT": "development",
             "DATABASE_URL": through_proxy}
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
        assert proxy.accepted > 0  # the engine went through the proxy ...
        with psycopg.connect(explicit_database, autocommit=True, row_factory=dict_row) as conn:  # ... into it
            assert conn.execute("SELECT count(*) AS n FROM schema_migrations").fetchone()["n"] > 0
            workspace_id = conn.execute("SELECT id FROM workspaces WHERE name = 'Local workspace'").fetchone()["id"]
            assistant_id = make_assistant(conn, workspace_id)

        admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        # Nothing said otherwise: a loopback test site may be crawled, the LAN and the metadata service not.
        local = admin.post("/api/sources", json={"assistant_id": assistant_id, "kind": "url", "url": f"{site.url}/"})
        assert local.status_code == 202, local.text
        for url in ("http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/", "http://[fec0::1]/"):
            refused = admin.post("/api/sources", json={"assistant_id": assistant_id, "kind": "url", "url": url})
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "private_address", refused.text
        deadline = time.monotonic() + 30  # the crawl job (queued, run by the dev process) reaches the site too
        while not site.hits["/"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert site.hits["/"] >= 1

        # A fault at the proxy reaches the engine: the next request opens a fresh connection and still answers.
        proxy.drop_all()
        assert admin.get("/api/keys").status_code == 200
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            output = dev.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            dev.kill()
            output = dev.communicate()[0]
        proxy.close()
        shutil.rmtree(data, ignore_errors=True)
    assert "from your environment instead of the local stack: DATABASE_URL" in output, output
    assert "ALLOW_PRIVATE_HOSTS=loopback" in output
