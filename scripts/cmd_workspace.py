"""`workspace create NAME`: a workspace and its first admin key (printed once);
`workspace add-member`: a NextAuth user."""

from __future__ import annotations

import argparse

from shared.core.db import connect, fetch_one
from shared.core.errors import NotFound
from shared.guard.auth import create_workspace


def register(groups: argparse._SubParsersAction) -> None:
    ws = groups.add_parser("workspace", help="workspaces").add_subparsers(dest="command", required=True)
    create = ws.add_parser("create", help="create a workspace and print its first admin key")
    create.add_argument("name")
    create.set_defaults(func=cmd_create)
    member = ws.add_parser("add-member", help="let a user signed in with NextAuth (by e-mail) use a workspace")
    member.add_argument("workspace_id")
    member.add_argument("email")
    member.add_argument("--role", choices=["admin", "member"], default="member",
                        help="admin: every route; member: chat routes only (default)")
    member.set_defaults(func=cmd_add_member)


def cmd_create(args: argparse.Namespace) -> int:
    with connect() as conn:
        workspace, key = create_workspace(conn, args.name)
    print(f"workspace {workspace['id']} ({workspace['name']})")
    print(f"admin key (shown once, store it now): {key}")
    return 0


def cmd_add_member(args: argparse.Namespace) -> int:
    email = args.email.strip()
    if "@" not in email:
        print(f"error: {email!r} is not an e-mail address")
        return 2
    with connect() as conn:
        row = fetch_one(conn, """
            INSERT INTO workspace_members (workspace_id, email, role)
            SELECT id, %s, %s FROM workspaces WHERE id = %s
            ON CONFLICT (workspace_id, email) DO UPDATE SET role = EXCLUDED.role
            RETURNING workspace_id, email, role""", (email.lower(), args.role, args.workspace_id))
    if row is None:
        raise NotFound(f"No workspace {args.workspace_id}.")
    print(f"{row['email']} is now {row['role']} of workspace {row['workspace_id']}")
    return 0
