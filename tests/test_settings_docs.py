"""Settings say what they mean: .env.example lists exactly what the code reads and its samples are refused in
production, PINECONE_ENVIRONMENT places the index, the non-pooled URL names Vercel/Neon set are used for
migrations, LOG_LEVEL changes what the functions log, and `health all` names the missing variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import psycopg
import pytest

from scripts.__main__ import main
from shared.core.settings import Settings, SettingsError, get_settings
from tests.conftest import ROOT, clear_caches

EXAMPLE = ROOT / ".env.example"
NOT_SETTINGS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # read by boto3 itself


def example_values() -> dict[str, str]:
    """NAME=value lines, commented-out ones (`# NAME=value`: documented, default left) included."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^#? ?([A-Z][A-Z0-9_]+)=(.*)$", EXAMPLE.read_text(), re.M)}


def env_names(field: str) -> set[str]:
    """The variables a setting is read from: its aliases when it has any, else its own name."""
    alias = Settings.model_fields[field].validation_alias
    return {str(choice) for choice in alias.choices} if alias is not None else {field.upper()}  # type: ignore[union-attr]


def test_every_setting_is_in_env_example_and_every_example_is_a_setting() -> None:
    listed = set(example_values())
    missing = [field for field in Settings.model_fields if not env_names(field) & listed]
    assert not missing, f".env.example does not mention {[sorted(env_names(f)) for f in missing]}"
    readable = {name for field in Settings.model_fields for name in env_names(field)} | NOT_SETTINGS
    assert listed <= readable, f"in .env.example but read by nothing: {sorted(listed - readable)}"


def settings_from(values: dict[str, str]) -> Settings:
    """Settings from these variables alone, as the app would read them (nothing from this process's env)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(values)
    try:
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_the_env_examples_own_sample_values_are_refused_in_production() -> None:
    values = {k: v for k, v in example_values().items() if v}
    assert values["ENVIRONMENT"] == "production"
    with pytest.raises(SettingsError) as refused:
        settings_from(values).check()
    message = str(refused.value)
    for name in ("DATABASE_URL", "PUBLIC_URL", "NEXTAUTH_URL"):
        assert f"{name} still holds a placeholder" in message, message
    assert "user:password" not in message and "example.com" not in message  # names, never values


def test_production_refuses_a_local_public_url() -> None:
    complete = {"ENVIRONMENT": "production", "DATABASE_URL": "postgresql://app:s3cr3t-long@db.internal/app",
                "QSTASH_TOKEN": "t0k", "QSTASH_CURRENT_SIGNING_KEY": "c", "QSTASH_NEXT_SIGNING_KEY": "n",
                "CRON_SECRET": "s", "UPSTASH_REDIS_REST_URL": "https://r.upstash.io", "UPSTASH_REDIS_REST_TOKEN": "r"}
    with pytest.raises(SettingsError, match="PUBLIC_URL is http://localhost:3000"):  # the default, left unset
        settings_from(complete).check()
    assert settings_from({**complete, "PUBLIC_URL": "https://chat.acme.io"}).check().is_production


def test_pinecone_environment_places_a_new_index(engine, pinecone_api, capsys, monkeypatch) -> None:
    pinecone_api.indexes.clear()
    monkeypatch.setenv("PINECONE_ENVIRONMENT", "eu-west-1-aws")  # the old runbook's way of saying where
    clear_caches()
    assert main(["pinecone", "create-index", "--wait", "10"]) == 0
    assert "aws/eu-west-1" in capsys.readouterr().out
    assert pinecone_api.indexes["dialog-engine"]["deployment"]["region"] == "eu-west-1"


@pytest.mark.parametrize(("env", "expected"), [
    ({"PINECONE_ENVIRONMENT": "eu-west-1-aws", "PINECONE_REGION": "us-east-1"}, "keep one of them"),
    ({"PINECONE_ENVIRONMENT": "gcp-starter"}, "is not <region>-<cloud>"),
])
def test_a_pinecone_environment_that_cannot_be_honoured_is_refused_by_name(env, expected, monkeypatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match=f"PINECONE_ENVIRONMENT=.*{expected}"):
            get_settings()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


@pytest.mark.parametrize("variable", ["DATABASE_URL_UNPOOLED", "POSTGRES_URL_NON_POOLING"])
def test_db_migrate_uses_the_non_pooled_url_vercel_and_neon_set(stack, variable) -> None:
    name = f"unpooled_{variable.lower()}"
    with psycopg.connect(stack.admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        # DATABASE_URL is the pooled one the functions use: here, one that would fail a migration outright.
        pooled = stack.dsn("no_such_database")
        run = subprocess.run([sys.executable, "-m", "scripts", "db", "migrate"], cwd=ROOT, capture_output=True,
                             text=True, timeout=120, check=False,
                             env={**os.environ, "DATABASE_URL": pooled, variable: stack.dsn(name)})
        assert run.returncode == 0, run.stderr
        with psycopg.connect(stack.dsn(name)) as conn:
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] > 0  # type: ignore[index]
    finally:
        with psycopg.connect(stack.admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


LOG_PROBE = """
import logging
import api.health  # any function: create_app applies LOG_LEVEL
log = logging.getLogger("dialog_engine.probe")
log.debug("probe-debug")
log.info("probe-info")
log.warning("probe-warning")
"""


@pytest.mark.parametrize(("level", "shown", "hidden"), [
    ("DEBUG", ["probe-debug", "probe-info", "probe-warning"], []),
    ("info", ["probe-info", "probe-warning"], ["probe-debug"]),
    ("WARNING", ["probe-warning"], ["probe-debug", "probe-info"]),
])
def test_log_level_sets_what_a_function_logs(level, shown, hidden) -> None:
    run = subprocess.run([sys.executable, "-c", LOG_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=False, env={**os.environ, "LOG_LEVEL": level})
    assert run.returncode == 0, run.stderr
    for line in shown:
        assert line in run.stderr, run.stderr
    for line in hidden:
        assert line not in run.stderr, run.stderr


def test_health_all_names_the_missing_variable() -> None:
    bare = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    run = subprocess.run([sys.executable, "-m", "scripts", "health", "all"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False, env={**bare, "ENVIRONMENT": "production",
                                                                  "DATABASE_URL": "postgresql://app@db.internal/app"})
    assert run.returncode == 1
    assert "QSTASH_TOKEN is not set" in run.stdout and "CRON_SECRET is not set" in run.stdout, run.stdout
    assert "SettingsError" not in run.stdout + run.stderr
    bad = subprocess.run([sys.executable, "-m", "scripts", "health", "all"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False, env={**bare, "JOB_LEASE_SECONDS": "soon"})
    assert bad.returncode == 1 and "JOB_LEASE_SECONDS" in bad.stdout, bad.stdout
    assert "ValidationError" not in bad.stdout + bad.stderr and "soon" not in bad.stdout
