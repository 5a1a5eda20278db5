"""Settings fail fast and name the variable; migrations are idempotent and keep the default template."""

from __future__ import annotations

import psycopg
import pytest

from shared.core.settings import Settings, SettingsError
from shared.ops.migrate import migrate, migration_files


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


@pytest.mark.parametrize("variable", ["openai_api_key", "openai_compatible_api_key", "firecrawl_webhook_secret"])
def test_placeholder_secret_in_production_names_the_variable(variable: str) -> None:
    # Every secret setting counts, including a registered provider's (not a hand-kept list).
    with pytest.raises(SettingsError, match=f"{variable.upper()} still holds a placeholder"):
        production(**{variable: "your-secret-key"}).check()


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
    from shared.core.settings import get_settings

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


def fresh_database(stack, name: str) -> str:
    with psycopg.connect(stack.admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return stack.dsn(name)


def write(folder, files: dict[str, str]):
    folder.mkdir(exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return folder


def test_no_transaction_migrations_build_indexes_concurrently_and_recover_from_an_interrupted_build(
        stack, tmp_path) -> None:
    from shared.ops.migrate import MigrationError

    url = fresh_database(stack, "migrate_concurrently")
    folder = write(tmp_path / "migrations", {
        "0001_orders.sql": "CREATE TABLE orders (id int, ref text);\n"
                           "INSERT INTO orders SELECT n, 'r' || (n % 500) FROM generate_series(1, 1000) n;",
        "0002_orders_by_ref.sql": "-- migrate: no-transaction\n-- one order per ref from now on\n"
                                  "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_ref ON orders (ref);\n"})
    # Duplicate refs: the concurrent build fails halfway and leaves an invalid index behind ...
    with pytest.raises(psycopg.errors.UniqueViolation):
        migrate(url, folder)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (1,)
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_ref'::regclass"
                            ).fetchone() == (False,)
        conn.execute("DELETE FROM orders WHERE id > 500")  # the operator fixes the data ...
    assert migrate(url, folder) == ["0002_orders_by_ref.sql"]  # ... and simply runs the deploy again
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT indisvalid, indisunique FROM pg_index WHERE indexrelid = 'orders_ref'::regclass"
                            ).fetchone() == (True, True)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO orders VALUES (9999, 'r1')")

    # $$ bodies can't be split into statements safely: refused with a clear error.
    write(folder, {"0003_function.sql": "-- migrate: no-transaction\nCREATE FUNCTION f() RETURNS int AS $$ "
                                        "SELECT 1; $$ LANGUAGE sql;\n"})
    with pytest.raises(MigrationError, match=r"0003_function.sql: .*\$\$"):
        migrate(url, folder)


def test_no_migration_blocks_writes_to_an_existing_table_while_it_builds_an_index(tmp_path) -> None:
    from shared.ops.migrate import unsafe_index_builds

    assert unsafe_index_builds() == []  # ours (0002 predates any data in chunks; see shared/ops/migrate.py)
    folder = write(tmp_path / "sample", {  # numbered past 0002, which is grandfathered
        "0011_base.sql": "CREATE TABLE pages (id int, url text);\nCREATE INDEX pages_url ON pages (url);",
        "0012_plain.sql": "CREATE INDEX pages_id ON pages (id);",
        "0013_concurrent_in_transaction.sql": "CREATE INDEX CONCURRENTLY pages_id2 ON public.pages (id);",
        "0014_good.sql": "-- migrate: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS pages_id3 ON pages (id);",
        "0015_unique.sql": "ALTER TABLE pages ADD CONSTRAINT pages_url_key UNIQUE (url);",
        "0016_unique_using_index.sql": "ALTER TABLE pages ADD CONSTRAINT pages_url_key UNIQUE USING INDEX pages_u;",
        "0017_new_table.sql": "CREATE TABLE notes (id int);\nCREATE INDEX notes_id ON notes (id);"})
    problems = unsafe_index_builds(folder)
    assert [p.split(":", 1)[0] for p in problems] == ["0012_plain.sql", "0013_concurrent_in_transaction.sql",
                                                     "0015_unique.sql"], problems
    assert "CONCURRENTLY" in problems[0] and "-- migrate: no-transaction" in problems[0]
