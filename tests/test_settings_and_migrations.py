"""Settings fail fast and name the variable; migrations are idempotent and keep the default template."""

from __future__ import annotations

import psycopg
import pytest

from shared.migrate import migrate, migration_files
from shared.settings import Settings, SettingsError


def production(**env: str) -> Settings:
    base = {"environment": "production", "database_url": "postgresql://u:p@db/x", "qstash_token": "t",
            "qstash_current_signing_key": "c", "qstash_next_signing_key": "n", "cron_secret": "s",
            "public_url": "https://x.dev", "upstash_redis_rest_url": "https://r", "upstash_redis_rest_token": "r",
            "allow_private_hosts": "false"}  # not the test stack's loopback from the environment
    return Settings(**{**base, **env})


def test_production_settings_pass_when_complete() -> None:
    assert production().check().is_production


@pytest.mark.parametrize("variable", ["qstash_token", "cron_secret", "upstash_redis_rest_token"])
def test_missing_secret_in_production_names_the_variable(variable: str) -> None:
    with pytest.raises(SettingsError, match=variable.upper()):
        production(**{variable: ""}).check()


def test_placeholder_secret_in_production_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="OPENAI_API_KEY still holds a placeholder"):
        production(openai_api_key="your-openai-key").check()


def test_redis_url_replaces_upstash_in_production() -> None:
    assert production(upstash_redis_rest_url="", upstash_redis_rest_token="", redis_url="redis://r:6379").check()


def test_error_never_echoes_the_secret_value() -> None:
    with pytest.raises(SettingsError) as info:
        production(cron_secret="changeme-supersecret").check()
    assert "supersecret" not in str(info.value)


def test_vercel_env_production_counts_as_production() -> None:
    settings = Settings(vercel_env="production", database_url="postgresql://x", qstash_token="")
    with pytest.raises(SettingsError, match="QSTASH_TOKEN"):
        settings.check()


@pytest.mark.parametrize("value", ["true", "loopback", "1"])
def test_production_refuses_allow_private_hosts(value: str) -> None:
    with pytest.raises(SettingsError, match="ALLOW_PRIVATE_HOSTS=.* is not allowed in production"):
        production(allow_private_hosts=value).check()
    assert production(allow_private_hosts="false").check()


def test_production_refuses_allow_private_hosts_from_the_environment(monkeypatch) -> None:
    from shared.settings import get_settings

    monkeypatch.setenv("VERCEL_ENV", "production")
    monkeypatch.setenv("ALLOW_PRIVATE_HOSTS", "true")
    for name, value in production().model_dump().items():
        if name in ("database_url", "qstash_token", "qstash_current_signing_key", "qstash_next_signing_key",
                    "cron_secret", "public_url", "upstash_redis_rest_url", "upstash_redis_rest_token"):
            monkeypatch.setenv(name.upper(), value)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match="ALLOW_PRIVATE_HOSTS"):
            get_settings()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_migrating_twice_is_a_no_op(stack) -> None:
    with psycopg.connect(stack.admin_dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS migrate_twice WITH (FORCE)")
        conn.execute("CREATE DATABASE migrate_twice")
    url = stack.dsn("migrate_twice")
    assert migrate(url) == [path.name for _, _, path in migration_files()]  # the first run applies all
    with psycopg.connect(url) as conn:
        tables_before = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        templates_before = conn.execute("SELECT count(*) FROM template_versions").fetchone()
    assert migrate(url) == []
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == tables_before
        assert conn.execute("SELECT count(*) FROM template_versions").fetchone() == templates_before
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        default = conn.execute("SELECT workspace_id, latest_version FROM templates WHERE id = 'default'").fetchone()
    assert versions == sorted(set(versions)) and versions
    assert default == (None, 1)
