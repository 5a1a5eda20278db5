"""`db migrate`, `db new NAME`, `db reset --yes` (and `db slow-queries`, from scripts/cmd_slow.py)."""

from __future__ import annotations

import argparse

from scripts import cmd_slow
from shared import migrate


def register(groups: argparse._SubParsersAction) -> None:
    db = groups.add_parser("db", help="database migrations").add_subparsers(dest="command", required=True)
    db.add_parser("migrate", help="apply pending migrations (safe to run again)").set_defaults(func=cmd_migrate)
    new = db.add_parser("new", help="create the next numbered migration file")
    new.add_argument("name")
    new.set_defaults(func=cmd_new)
    reset = db.add_parser("reset", help="drop everything and migrate again (local only)")
    reset.add_argument("--yes", action="store_true", help="really drop all data")
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
    applied = migrate.reset()
    print(f"reset; applied: {', '.join(applied)}")
    return 0
