"""`workspace create NAME`: a workspace and its first admin key (printed once)."""

from __future__ import annotations

import argparse

from shared.auth import create_workspace
from shared.db import connect


def register(groups: argparse._SubParsersAction) -> None:
    ws = groups.add_parser("workspace", help="workspaces").add_subparsers(dest="command", required=True)
    create = ws.add_parser("create", help="create a workspace and print its first admin key")
    create.add_argument("name")
    create.set_defaults(func=cmd_create)


def cmd_create(args: argparse.Namespace) -> int:
    with connect() as conn:
        workspace, key = create_workspace(conn, args.name)
    print(f"workspace {workspace['id']} ({workspace['name']})")
    print(f"admin key (shown once, store it now): {key}")
    return 0
