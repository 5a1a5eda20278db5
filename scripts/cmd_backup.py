"""`backup create`, `backup list`, `backup restore DATE`, `backup verify`, `backup keygen`: age-encrypted pg_dump
backups in S3 (create needs only the public key BACKUP_RECIPIENT; restore and verify need the identity)."""

from __future__ import annotations

import argparse
import sys

from scripts import _guards

DATE_HELP = "YYYY-MM-DD (that day's latest backup), 'latest', or an exact key from `backup list`"


def register(groups: argparse._SubParsersAction) -> None:
    backup = groups.add_parser("backup", help="encrypted database backups in S3").add_subparsers(
        dest="command", required=True)
    create = backup.add_parser("create", help="pg_dump, encrypt to BACKUP_RECIPIENT, upload to BACKUP_BUCKET")
    create.add_argument("--database-url", help="database to dump (default DATABASE_URL_UNPOOLED, else DATABASE_URL)")
    create.set_defaults(func=cmd_create)
    listing = backup.add_parser("list", help="backups in the bucket: date, key, size")
    listing.add_argument("--day", help="only this day (YYYY-MM-DD)")
    listing.set_defaults(func=cmd_list)
    restore = backup.add_parser("restore", help="restore a backup into a database (asks for confirmation)")
    restore.add_argument("date", metavar="DATE", help=DATE_HELP)
    restore.add_argument("--target-url", help="database to restore into (default DATABASE_URL_UNPOOLED, else "
                                              "DATABASE_URL; created if missing)")
    restore.add_argument("--yes", action="store_true", help="do not ask: replace the target's data (an existing "
                                                            "database other than the local stack needs --allow-remote)")
    _guards.add_override(restore, "the target database's name")
    restore.set_defaults(func=cmd_restore)
    verify = backup.add_parser("verify", help="restore a backup into a scratch database and compare row counts")
    verify.add_argument("date", metavar="DATE", nargs="?", default="latest", help=DATE_HELP + " (default latest)")
    verify.add_argument("--database-url", help="server to create the scratch database on (default DATABASE_URL)")
    verify.set_defaults(func=cmd_verify)
    backup.add_parser("keygen", help="print a new age key pair: the identity to keep offline, the recipient to "
                                     "set as BACKUP_RECIPIENT").set_defaults(func=cmd_keygen)


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _where(url: str) -> str:
    """Database and host for humans, never the password."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    host = str(params.get("host") or "localhost")
    return f"database {params.get('dbname') or 'postgres'!r} on {'local socket' if host.startswith('/') else host}"


def cmd_create(args: argparse.Namespace) -> int:
    from shared.ops import backup

    made, manifest = backup.create(args.database_url)
    counts = manifest["row_counts"]
    print(f"created {made.key} ({_size(made.size)}, {len(counts)} tables, {sum(counts.values())} rows) "
          f"in {manifest['seconds']:.1f} s")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from shared.ops import backup

    found = backup.list_backups(args.day)
    if not found:
        print("no backups yet (run `python -m scripts backup create`)")
        return 0
    print(f"{'date (UTC)':20}  {'size':>10}  key")
    for item in reversed(found):  # newest first
        print(f"{item.created:%Y-%m-%d %H:%M:%S}  {_size(item.size):>10}  {item.key}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from shared.core.settings import get_settings
    from shared.ops import backup

    target = args.target_url or get_settings().session_database_url
    chosen = backup.resolve(args.date)
    print(f"backup: {chosen.key} ({_size(chosen.size)}, made {chosen.created:%Y-%m-%d %H:%M:%S} UTC)")
    print(f"target: {_where(target)} - its tables will be replaced by the backup's")
    name = backup.database_name(target)
    if args.allow_remote is None and not (args.yes and _may_skip_question(target)) and not _confirmed(name):
        print("refused: nothing was restored (pass --yes, or type the database name when asked)", file=sys.stderr)
        if args.yes:
            print(f"--yes is not enough here: {_where(target)} exists and is not the local stack; name it with "
                  f"--allow-remote {name} to replace its tables", file=sys.stderr)
        return 2
    if args.allow_remote is not None and args.allow_remote != name:
        print(f"refused: --allow-remote {args.allow_remote!r} does not name the target ({name!r}); nothing was "
              "restored", file=sys.stderr)
        return 2
    manifest = backup.restore(chosen, target)
    counts = manifest["row_counts"]
    print(f"restored {len(counts)} tables, {sum(counts.values())} rows into {_where(target)}")
    return 0


def _may_skip_question(target: str) -> bool:
    """--yes alone restores into a new database or over the local stack's; over any other existing database
    (a live one, most likely) the operator must name it (--allow-remote NAME, or type it when asked)."""
    from shared.ops import backup

    return not backup.database_exists(target) or _guards.database_is_local_stack(target)


def _confirmed(database: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"type the database name ({database}) to restore into it: ")
    except EOFError:
        return False
    return answer.strip() == database


def cmd_verify(args: argparse.Namespace) -> int:
    from shared.ops import backup

    chosen = backup.resolve(args.date)
    print(f"verifying {chosen.key} ({_size(chosen.size)}, made {chosen.created:%Y-%m-%d %H:%M:%S} UTC)")
    result = backup.verify(chosen, args.database_url)
    width = max([len(name) for name, _, _ in result.tables] + [5])
    print(f"restored into scratch database {result.scratch} (dropped afterwards)\n")
    print(f"{'table':{width}}  {'in backup':>10}  {'restored':>10}  status")
    for name, expected, restored in result.tables:
        status = "ok" if expected == restored else "MISMATCH"
        print(f"{name:{width}}  {_count(expected):>10}  {_count(restored):>10}  {status}")
    bad = [name for name, expected, restored in result.tables if expected != restored]
    total = sum(max(restored, 0) for _, _, restored in result.tables)
    if bad:
        print(f"\nFAILED: {len(bad)} of {len(result.tables)} tables differ: {', '.join(bad)}")
        return 1
    print(f"\nok: {len(result.tables)} tables, {total} rows, every count matches the backup's manifest")
    return 0


def _count(value: int) -> str:
    return "missing" if value < 0 else str(value)


def cmd_keygen(args: argparse.Namespace) -> int:
    from shared.ops import backup

    identity, recipient = backup.new_identity()
    print("# Keep this identity where you restore (a password manager, BACKUP_IDENTITY or BACKUP_IDENTITY_FILE),")
    print("# never on the machine that makes backups: without it no backup can be read.")
    print(f"# public key: {recipient}")
    print(identity)
    print(f"\nBACKUP_RECIPIENT={recipient}", file=sys.stderr)
    return 0
