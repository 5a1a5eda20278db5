"""`dev` (the whole local stack on localhost:3000) and `serve` (the router alone, for Docker)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# The stack's connection settings that a variable set in the shell replaces, so that a fault proxy (or another
# PostgreSQL/Redis/QStash) can sit in front of the engine: `DATABASE_URL=postgresql://...proxy... make dev`.
# .env does not replace them: it usually holds a deployment's values, and `make dev` migrates and creates a
# workspace in whatever DATABASE_URL it uses.
# Any of these set (shell or .env) means an embeddings API is configured; without them `make dev` serves the
# local model so hybrid search works with no key.
EMBEDDINGS_CONFIGURED_BY = ("OPENAI_API_KEY", "EMBEDDING_BASE_URL", "OPENAI_BASE_URL")

SHELL_WINS = ("DATABASE_URL", "UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN", "QSTASH_URL", "QSTASH_TOKEN",
              "QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY")


def register(groups: argparse._SubParsersAction) -> None:
    dev = groups.add_parser("dev", help="start PostgreSQL, Redis, the stand-ins and every function locally")
    dev.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    dev.add_argument("--data", default=str(ROOT / ".data"), help="where the local data lives")
    dev.add_argument("--vercel", action="store_true",
                     help="serve through `vercel dev --local` (the Vercel CLI's emulation) instead of the local router")
    dev.add_argument("--revectorize", action="store_true",
                     help="stored vectors of another size (another embeddings model): drop them and embed every "
                          "chunk again with this run's model before serving")
    dev.set_defaults(func=cmd_dev)
    serve = groups.add_parser("serve", help="serve every function and public/ (uses the environment as is)")
    serve.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    serve.set_defaults(func=cmd_serve)


def cmd_dev(args: argparse.Namespace) -> int:
    from dotenv import dotenv_values

    from scripts.local_stack import LocalStack

    shell = dict(os.environ)  # read before .env: only what the developer set explicitly
    dotenv = {k: v for k, v in dotenv_values(ROOT / ".env").items() if v is not None}  # model keys and more
    data = Path(args.data)
    stack = LocalStack(data, public_url=f"http://localhost:{args.port}")
    print("starting PostgreSQL, Redis, the Upstash/QStash stand-ins and the local embedding model ...", flush=True)
    with stop_on_signals():  # SIGTERM / SIGHUP stop it like Ctrl-C: everything started is stopped again
        try:
            env = stack.start()
            applied = dev_environment(env, shell, dotenv, local_embeddings=stack.embeddings_env())
            os.environ.update(applied)
            # What this process now runs with, for the CLI in another terminal (scripts/local_stack.py).
            published = {name: os.environ[name] for name in {*env, *applied} if name in os.environ}
            stack.publish(published)
            _serve(stack, shell, data, args, published)
        finally:
            print("stopping the local stack ...", flush=True)
            with ignore_interrupts():  # a second Ctrl-C must not leave PostgreSQL or Redis running
                stack.stop()
    return 0


def _serve(stack: Any, shell: Mapping[str, str], data: Path, args: argparse.Namespace,
           published: dict[str, str]) -> None:
    import uvicorn

    from shared.core.settings import get_settings

    if kept := [name for name in (*SHELL_WINS, "REDIS_URL") if shell.get(name)]:
        print("from your environment instead of the local stack: " + ", ".join(kept), flush=True)
    print(f"crawler: ALLOW_PRIVATE_HOSTS={os.environ.get('ALLOW_PRIVATE_HOSTS') or 'false'}", flush=True)
    get_settings.cache_clear()
    print(f"embeddings: {_embeddings_line(stack.embeddings_url)}", flush=True)
    from shared.ops.migrate import migrate

    applied = _migrate(migrate, args.revectorize)
    print("migrations: " + (", ".join(applied) if applied else "up to date"))
    key = _local_admin_key(data)
    print(f"\n  Dialog Engine on http://localhost:{args.port}  (chat page: /, health: /api/health)")
    print(f"  admin key: {key}   (also in {data / 'admin-key'})")
    print("  the CLI finds this stack by itself: python -m scripts health all (another terminal)\n", flush=True)
    if getattr(args, "vercel", False):
        from scripts._vercel_tools import run_vercel_dev

        run_vercel_dev(args.port, published)
        return
    from scripts.router import create_router

    uvicorn.run(create_router(), host="127.0.0.1", port=args.port, log_level="info")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as SIGINT does, so `finally` stops the stack; without
    this a `kill` or a closed terminal left PostgreSQL and both redis-servers running. uvicorn takes the
    signals over while it serves and raises them again after its own shutdown, which lands here."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def ignore_interrupts() -> Iterator[None]:
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _migrate(migrate: Callable[[], list[str]], revectorize: bool) -> list[str]:
    """Migrate; vectors stored by another model (another size) are re-embedded with --revectorize, else said
    and left (search answers from keywords, health names the setting) rather than stopping `make dev`."""
    from shared.ops.migrate import EmbeddingColumnMismatch

    try:
        return migrate()
    except EmbeddingColumnMismatch as exc:
        if not revectorize:
            print(f"warning: {exc}\n  in make dev: `python -m scripts dev --revectorize` re-embeds them with this "
                  "run's model", flush=True)
            return []
    from scripts.cmd_vectorize import cmd_all

    args = argparse.Namespace(workspace=None, assistant=None, source=None, batch=500, missing=False,
                              restart=True, queue=False, reindex=True, resize=True)
    if cmd_all(args):
        raise SystemExit("re-embedding the stored vectors failed")
    return migrate()


def dev_environment(stack: Mapping[str, str], shell: Mapping[str, str], dotenv: Mapping[str, str],
                    local_embeddings: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables `make dev` sets: .env fills in, the stack's addresses and secrets win over .env, and the
    shell's own DATABASE_URL, Upstash and QStash settings win over the stack's.

    With no embeddings API configured (EMBEDDINGS_CONFIGURED_BY unset in the shell and .env), the local
    model's settings apply: its base URL, model name and dimensions win over .env (whose EMBEDDING_DIMENSIONS
    is for OpenAI); an EMBEDDING_DIMENSIONS set in the shell is kept (the model serves up to 256).

    ALLOW_PRIVATE_HOSTS is a preference, not an address: set in the shell or .env it is kept as it is;
    unset, the crawler may reach loopback (local test sites) and nothing else that is not public.
    """
    env = {name: value for name, value in dotenv.items() if name not in shell}
    env.update({name: value for name, value in stack.items() if not (name in SHELL_WINS and shell.get(name))})
    if shell.get("REDIS_URL") and not shell.get("UPSTASH_REDIS_REST_URL"):
        # A plain Redis from the shell: the engine prefers Upstash when both are set, so blank the stand-in's.
        env.update(UPSTASH_REDIS_REST_URL="", UPSTASH_REDIS_REST_TOKEN="")
    explicit = "ALLOW_PRIVATE_HOSTS" in shell or "ALLOW_PRIVATE_HOSTS" in dotenv
    if not explicit and not _production(shell, dotenv):  # production settings refuse anything but false
        # Local test sites listen on 127.0.0.1; the LAN, link-local and the metadata service stay blocked.
        env["ALLOW_PRIVATE_HOSTS"] = "loopback"
    configured = any(shell.get(name) or dotenv.get(name) for name in EMBEDDINGS_CONFIGURED_BY)
    if local_embeddings and not configured:
        env.update({name: value for name, value in local_embeddings.items()
                    if not (name == "EMBEDDING_DIMENSIONS" and shell.get(name))})
    return env


def _embeddings_line(local_url: str) -> str:
    """What serves embeddings, for the start-up banner; the local model is loaded now, not on the first page."""
    from shared.core.settings import get_settings
    from shared.knowledge.embeddings import describe_embeddings

    settings = get_settings()
    if settings.embedding_base_url == local_url:
        import threading

        from scripts.local_embeddings import load_model

        threading.Thread(target=load_model, name="load-embedding-model", daemon=True).start()
    return describe_embeddings()


def _production(shell: Mapping[str, str], dotenv: Mapping[str, str]) -> bool:
    values = (shell[name] if name in shell else dotenv.get(name, "") for name in ("ENVIRONMENT", "VERCEL_ENV"))
    return "production" in {value.strip().lower() for value in values}


def _local_admin_key(data: Path) -> str:
    """The local workspace's admin key: created on the first run, then read back (the hash is in the DB)."""
    from shared.core.db import connect
    from shared.guard.auth import create_workspace, hash_key

    path = data / "admin-key"
    with connect() as conn:
        if path.exists():
            key = path.read_text().strip()
            if conn.execute("SELECT 1 FROM api_keys WHERE hash = %s AND revoked_at IS NULL",
                            (hash_key(key),)).fetchone():
                return key
        _, key = create_workspace(conn, "Local workspace")
    path.write_text(key + "\n")
    os.chmod(path, 0o600)
    return key


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from scripts.router import create_router

    uvicorn.run(create_router(), host=args.host, port=args.port, proxy_headers=True)
    return 0
