"""`dev` (the whole local stack on localhost:3000) and `serve` (the router alone, for Docker)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def register(groups: argparse._SubParsersAction) -> None:
    dev = groups.add_parser("dev", help="start PostgreSQL, Redis, the stand-ins and every function locally")
    dev.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    dev.add_argument("--data", default=str(ROOT / ".data"), help="where the local data lives")
    dev.set_defaults(func=cmd_dev)
    serve = groups.add_parser("serve", help="serve every function and public/ (uses the environment as is)")
    serve.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    serve.set_defaults(func=cmd_serve)


def cmd_dev(args: argparse.Namespace) -> int:
    import uvicorn

    from scripts.local_stack import LocalStack
    from shared.settings import get_settings

    from dotenv import load_dotenv

    load_dotenv(ROOT / ".env", override=False)  # model keys and other settings a developer adds
    data = Path(args.data)
    stack = LocalStack(data, public_url=f"http://localhost:{args.port}")
    print("starting PostgreSQL, Redis and the Upstash/QStash stand-ins ...", flush=True)
    os.environ.update(stack.start())  # the stack's own addresses and secrets win over .env
    get_settings.cache_clear()
    try:
        from shared.migrate import migrate

        applied = migrate()
        print("migrations: " + (", ".join(applied) if applied else "up to date"))
        key = _local_admin_key(data)
        print(f"\n  Dialog Engine on http://localhost:{args.port}  (chat page: /, health: /api/health)")
        print(f"  admin key: {key}   (also in {data / 'admin-key'})\n", flush=True)
        from scripts.router import create_router

        uvicorn.run(create_router(), host="127.0.0.1", port=args.port, log_level="info")
    finally:
        print("stopping the local stack ...", flush=True)
        stack.stop()
    return 0


def _local_admin_key(data: Path) -> str:
    """The local workspace's admin key: created on the first run, then read back (the hash is in the DB)."""
    from shared.auth import create_workspace, hash_key
    from shared.db import connect

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
