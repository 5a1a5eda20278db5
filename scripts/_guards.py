"""Guards for the destructive commands (`db reset`, `backup restore` over an existing database, `cache clear`).

They run freely against the local stack (`make dev`, the tests); anywhere else they need `--allow-remote NAME`
naming what is about to be destroyed (the database name, or the Redis host). `--yes` only skips a question:
a script that passes it out of habit must not wipe production because DATABASE_URL pointed there.

"The local stack" is strict on purpose: not production settings, a loopback host or Unix socket, and (for
PostgreSQL) a server whose data directory is on this machine, so an SSH tunnel on localhost:5432 to a remote
database does not count.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit

LOOPBACK = {"", "localhost", "127.0.0.1", "::1", "[::1]"}
OVERRIDE = "--allow-remote"


class NotLocal(Exception):
    """A destructive command aimed at something other than the local stack, without the override."""


def add_override(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(OVERRIDE, metavar="NAME", default=None,
                        help=f"run it against something other than the local stack anyway: NAME must be {what}")


def _local_host(host: str) -> bool:
    return host.startswith("/") or host.startswith("@") or host.lower() in LOOPBACK or host.startswith("127.")


def database_host(url: str) -> str:
    """Where a libpq URL connects, for messages and the local check (several hosts: all of them, comma-joined)."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    return str(params.get("host") or "")


def database_is_local_stack(url: str) -> bool:
    """A PostgreSQL on this machine: a socket or loopback address, and its data directory exists here."""
    from shared.core.settings import get_settings

    if get_settings().is_production:
        return False
    if not all(_local_host(host.strip()) for host in database_host(url).split(",")):
        return False
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
    except psycopg.Error:  # unreachable, or a role that may not read it: not provably ours
        return False
    return bool(row) and (Path(str(row[0])) / "PG_VERSION").exists()


def redis_endpoint() -> str:
    """The Redis the CLI would talk to, as a URL (the Upstash REST one wins, as in shared/core/kv.py)."""
    from shared.core.settings import get_settings

    settings = get_settings()
    if settings.upstash_redis_rest_url and settings.upstash_redis_rest_token:
        return settings.upstash_redis_rest_url
    return settings.redis_url or ""


def redis_host(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return parts.hostname or ""


def redis_is_local_stack(url: str) -> bool:
    from shared.core.settings import get_settings

    return bool(url) and not get_settings().is_production and _local_host(redis_host(url))


def require_local(is_local: bool, *, action: str, target: str, name: str, override: str | None) -> None:
    """Raise NotLocal unless the target is the local stack or `--allow-remote` names it exactly."""
    if is_local:
        return
    if override is None:
        raise NotLocal(f"refused: {action} on {target}, which is not the local stack (nothing was changed). "
                       f"If you really mean it, run it again with {OVERRIDE} {name}")
    if override != name:
        raise NotLocal(f"refused: {OVERRIDE} {override!r} does not name the target ({name!r}); nothing was changed")
