"""`db reset --yes` and `cache clear` touch only the local stack unless `--allow-remote NAME` names the target.

"Remote" here is a real connection to the test stack under a production-looking host name (libpq's hostaddr,
or this machine's own host name), or the test stack with production settings: what an operator's shell
pointed at a deployment looks like to the command.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.conftest import ROOT
from tests.fakes.tcp_proxy import TcpProxy, postgres_target


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts", *args], cwd=ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False, env={**os.environ, **env}, timeout=120)


def production(**env: str) -> dict[str, str]:
    """The test stack's own settings, as a production shell would have them (the check passes)."""
    return {"ENVIRONMENT": "production", "ALLOW_PRIVATE_HOSTS": "false", "PUBLIC_URL": "https://chat.acme.io", **env}


def workspaces(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM workspaces").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def remote_url(engine):
    """The test database, reached over TCP under the name `db.prod.internal` (hostaddr does the connecting)."""
    proxy = TcpProxy(postgres_target(engine.dsn))
    database = urlsplit(engine.dsn).path.lstrip("/")
    yield f"postgresql://postgres@db.prod.internal:{proxy.port}/{database}?hostaddr=127.0.0.1", database
    proxy.close()


def test_db_reset_refuses_a_database_that_is_not_the_local_stack(engine, remote_url) -> None:
    url, database = remote_url
    engine.workspace("Keep me")
    refused = run_cli("db", "reset", "--yes", DATABASE_URL=url)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "not the local stack" in refused.stderr and f"--allow-remote {database}" in refused.stderr
    assert "db.prod.internal" in refused.stderr
    assert workspaces(engine.dsn) == 1  # nothing dropped

    wrong = run_cli("db", "reset", "--yes", "--allow-remote", "some_other_db", DATABASE_URL=url)
    assert wrong.returncode == 2 and "does not name the target" in wrong.stderr
    assert workspaces(engine.dsn) == 1

    named = run_cli("db", "reset", "--yes", "--allow-remote", database, DATABASE_URL=url)
    assert named.returncode == 0, named.stderr
    assert workspaces(engine.dsn) == 0  # the override really resets


def test_db_reset_refuses_production_settings_even_on_this_machine(engine) -> None:
    engine.workspace("Keep me")
    refused = run_cli("db", "reset", "--yes", **production())
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "not the local stack" in refused.stderr
    assert workspaces(engine.dsn) == 1


def test_db_reset_still_works_on_the_local_stack(engine) -> None:
    engine.workspace("Scratch")
    done = run_cli("db", "reset", "--yes")
    assert done.returncode == 0, done.stderr
    assert "reset; applied:" in done.stdout and workspaces(engine.dsn) == 0


def seed(kv) -> None:
    for key in ("asst:ws_1:a", "spend:ws_1:2026-01-01", "chat:k:ratelimit"):
        kv.set(key, "1", ttl=600)


def test_cache_clear_of_every_key_refuses_a_redis_that_is_not_the_local_stack(engine) -> None:
    from shared.core.kv import get_kv

    kv = get_kv()
    seed(kv)
    host = socket.gethostname()
    assert host not in ("localhost", "") and socket.gethostbyname(host).startswith("127."), host
    stand_in = urlsplit(os.environ["UPSTASH_REDIS_REST_URL"])
    remote = f"http://{host}:{stand_in.port}"  # the same stand-in, under a name that is not loopback
    refused = run_cli("cache", "clear", UPSTASH_REDIS_REST_URL=remote)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"--allow-remote {host}" in refused.stderr and "--prefix" in refused.stderr
    assert len(kv.scan("*")) == 3  # spend counters and rate limits survive

    targeted = run_cli("cache", "clear", "--prefix", "asst:", UPSTASH_REDIS_REST_URL=remote)
    assert targeted.returncode == 0, targeted.stderr  # the runbook's targeted clear works anywhere
    assert sorted(kv.scan("*")) == ["chat:k:ratelimit", "spend:ws_1:2026-01-01"]

    in_production = run_cli("cache", "clear", **production())
    assert in_production.returncode == 2 and len(kv.scan("*")) == 2

    named = run_cli("cache", "clear", "--allow-remote", host, UPSTASH_REDIS_REST_URL=remote)
    assert named.returncode == 0, named.stderr
    assert kv.scan("*") == []
