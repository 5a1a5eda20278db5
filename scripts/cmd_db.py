"""`db migrate`, `db new NAME`, `db reset --yes` (and `db slow-queries`, from scripts/cmd_slow.py)."""

from __future__ import annotations

import argparse
import sys

from scripts import _guards, cmd_slow
from shared.ops import migrate


def register(groups: argparse._SubParsersAction) -> None:
    db = groups.add_parser("db", help="database migrations").add_subparsers(dest="command", required=True)
    db.add_parser("migrate", help="apply pending migrations (safe to run again; uses DATABASE_URL_UNPOOLED when set)"
                  ).set_defaults(func=cmd_migrate)
    new = db.add_parser("new", help="create the next numbered migration file")
    new.add_argument("name")
    new.set_defaults(func=cmd_new)
    reset = db.add_parser("reset", help="drop everything and migrate again (the local stack only)")
    reset.add_argument("--yes", action="store_true", help="really drop all data")
    _guards.add_override(reset, "the database's name")
    reset.set_defaults(func=cmd_reset)
    cmd_slow.add_commands(db)


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = migrate.migrate()
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    print(f"created {migrate.new_migration(args.name)}")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    if not args.yes:
        print("db reset drops every table and row; run it again with --yes to do it")
        return 2
    from shared.core.settings import get_settings
    from shared.ops.backup import database_name

    url = get_settings().session_database_url
    name = database_name(url)
    try:
        _guards.require_local(_guards.database_is_local_stack(url), action="db reset drops every table",
                              target=f"database {name!r} on {_guards.database_host(url) or 'the default socket'}",
                              name=name, override=args.allow_remote)
    except _guards.NotLocal as exc:
        print(exc, file=sys.stderr)
        return 2
    applied = migrate.reset(url)
    print(f"reset; applied: {', '.join(applied)}")
    return 0
