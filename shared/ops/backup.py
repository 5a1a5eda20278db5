"""Encrypted database backups: pg_dump -> encrypt -> S3, and back; verify restores into a scratch database.

A backup is one S3 object `<prefix>/YYYY/MM/DD/dialog-engine-YYYYmmddTHHMMSSZ.tar.age`: an age file
(age-encryption.org/v1, X25519) encrypted to BACKUP_RECIPIENT, the public key. The machine that makes
backups holds only that, so it cannot read them; restore and verify need the identity (the private key,
BACKUP_IDENTITY or BACKUP_IDENTITY_FILE). Inside is a plain tar of two files: `manifest.json` (row counts
per table, taken in the very snapshot pg_dump reads) and `database.dump` (`pg_dump -Fc`). So standard
tools read it: `age -d -i key.txt FILE | tar -x` then `pg_restore database.dump`.

Restores decrypt the whole object to a temporary file first (age authenticates every 64 KiB chunk and the
end), so a tampered or wrong-key backup is refused before pg_restore sees a byte; pg_restore runs in one
transaction. Backups of the earlier passphrase format (`.dump.enc`, DLGBAK1) are listed but refused with a
message saying how to restore them.

pg_dump and pg_restore come from the pgserver wheel when installed (local work, tests), else from PATH
(Docker image: postgresql-client-16). A Vercel function has neither: the nightly `backup` job is for
self-hosting or a runner that has them.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.core.settings import get_settings

KEY_NAME = re.compile(r"dialog-engine-(\d{8}T\d{6}Z)\.(tar\.age|dump\.enc)$")  # .dump.enc: the old format
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
AGE_MAGIC = b"age-encryption.org/v1\n"
OLD_MAGIC = b"DLGBAK1\n"
MANIFEST, DUMP = "manifest.json", "database.dump"

__all__ = ["BackupError", "DecryptionError", "NotConfigured", "ToolMissing", "create", "list_backups", "resolve",
           "restore", "verify", "new_identity"]


class BackupError(Exception):
    """A backup operation cannot go on; the message tells the operator what to do."""


class ToolMissing(BackupError):
    """pg_dump or pg_restore is not installed where this runs."""


class NotConfigured(BackupError):
    """BACKUP_BUCKET, BACKUP_RECIPIENT or (to read a backup) the identity is missing or malformed."""


class DecryptionError(BackupError):
    """The file is not a backup, was altered, or the identity does not open it. Nothing may be restored."""


@dataclass
class Backup:
    key: str
    size: int
    created: dt.datetime


@dataclass
class VerifyResult:
    backup: Backup
    scratch: str
    tables: list[tuple[str, int, int]] = field(default_factory=list)  # (table, in backup, restored)

    @property
    def ok(self) -> bool:
        return all(expected == restored for _, expected, restored in self.tables)


# ---------------------------------------------------------------- tools and connections

def find_tool(name: str) -> str:
    """The pg_dump / pg_restore to run: BACKUP_PG_BIN_DIR if set, else pgserver's, else PATH."""
    configured = get_settings().backup_pg_bin_dir
    if configured:
        candidates = [Path(configured) / name]
    else:
        spec = importlib.util.find_spec("pgserver")  # located, not imported: it is a dev-only wheel
        candidates = [Path(spec.origin).parent / "pginstall" / "bin" / name] if spec and spec.origin else []
        on_path = shutil.which(name)
        candidates += [Path(on_path)] if on_path else []
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    raise ToolMissing(f"{name} was not found ({'BACKUP_PG_BIN_DIR=' + configured if configured else 'PATH'}). "
                      "Install the PostgreSQL 16 client tools (Debian: postgresql-client-16), or run backups "
                      "from the Docker image; Vercel functions have no pg_dump.")


def database_name(url: str) -> str:
    return str(conninfo_to_dict(url).get("dbname") or "postgres")


def with_database(url: str, name: str) -> str:
    """The same server and credentials, another database (works for unix-socket URIs too)."""
    return make_conninfo(url, dbname=name)


def _tool_args(url: str) -> tuple[str, dict[str, str]]:
    """A conninfo for --dbname without the password, which goes in PGPASSWORD (never on a command line)."""
    params = conninfo_to_dict(url)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**{k: str(v) for k, v in params.items()}), env


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BackupError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")


def row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Exact row counts of every user table, one statement."""
    tables = conn.execute("""
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
        ORDER BY 1, 2""").fetchall()
    if not tables:
        return {}
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}, count(*) FROM {}.{}").format(sql.Literal(f"{s}.{t}"), sql.Identifier(s),
                                                        sql.Identifier(t)) for s, t in tables)
    return {name: int(count) for name, count in conn.execute(query).fetchall()}


# ---------------------------------------------------------------- S3

def _s3() -> Any:
    import boto3  # heavy: only when a backup command runs

    settings = get_settings()
    return boto3.client("s3", region_name=settings.aws_region,
                        endpoint_url=settings.backup_s3_endpoint_url or None)


def _bucket() -> str:
    bucket = get_settings().backup_bucket
    if not bucket:
        raise NotConfigured("Set BACKUP_BUCKET (and AWS credentials) to store backups in S3.")
    return bucket


# ---------------------------------------------------------------- age keys

def recipients() -> list[Any]:
    """BACKUP_RECIPIENT: one or more public keys (`age1...`, or `ssh-ed25519 ...` / `ssh-rsa ...`), comma-separated."""
    from pyrage import RecipientError, ssh, x25519

    configured = [r.strip() for r in (get_settings().backup_recipient or "").split(",") if r.strip()]
    if not configured:
        raise NotConfigured("Set BACKUP_RECIPIENT to the age public key (age1...) backups are encrypted to; "
                            "`python -m scripts backup keygen` makes a key pair.")
    try:
        return [ssh.Recipient.from_str(r) if r.startswith("ssh-") else x25519.Recipient.from_str(r)
                for r in configured]
    except RecipientError as exc:
        raise NotConfigured(f"BACKUP_RECIPIENT is not an age public key ({exc}).") from None


def identities() -> list[Any]:
    """The private key(s) that open backups: BACKUP_IDENTITY, else the age identity file BACKUP_IDENTITY_FILE."""
    from pyrage import IdentityError, x25519

    settings = get_settings()
    text = settings.backup_identity or ""
    if not text and settings.backup_identity_file:
        try:
            text = Path(settings.backup_identity_file).read_text()
        except OSError as exc:
            raise NotConfigured(f"BACKUP_IDENTITY_FILE cannot be read: {exc.strerror}.") from None
    # The identity file format age-keygen writes: `# comments` and one AGE-SECRET-KEY-1... per line.
    lines = [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]
    keys = [key.strip() for line in lines for key in line.split(",") if key.strip()]
    if not keys:
        raise NotConfigured("Set BACKUP_IDENTITY (AGE-SECRET-KEY-1...) or BACKUP_IDENTITY_FILE to read backups; "
                            "the machine that only makes them needs just BACKUP_RECIPIENT.")
    try:
        return [x25519.Identity.from_str(key) for key in keys]
    except IdentityError:  # never echo the value: it is a private key
        raise NotConfigured("BACKUP_IDENTITY / BACKUP_IDENTITY_FILE holds no valid age identity "
                            "(AGE-SECRET-KEY-1...).") from None


def new_identity() -> tuple[str, str]:
    """A fresh age key pair: (identity to keep offline, recipient to configure as BACKUP_RECIPIENT)."""
    from pyrage import x25519

    identity = x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def backup_key(now: dt.datetime) -> str:
    prefix = get_settings().backup_prefix.strip("/")
    return f"{prefix}/{now:%Y/%m/%d}/dialog-engine-{now:%Y%m%dT%H%M%SZ}.tar.age"


def list_backups(day: str | None = None) -> list[Backup]:
    """Every backup under BACKUP_PREFIX (or of one day, YYYY-MM-DD), oldest first."""
    prefix = get_settings().backup_prefix.strip("/") + "/" + (day.replace("-", "/") + "/" if day else "")
    found = []
    for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=_bucket(), Prefix=prefix):
        for item in page.get("Contents", []):
            match = KEY_NAME.search(item["Key"])
            if match:
                created = dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
                found.append(Backup(item["Key"], int(item["Size"]), created))
    return sorted(found, key=lambda b: (b.created, b.key))


def resolve(ref: str) -> Backup:
    """`latest`, a day (YYYY-MM-DD: that day's latest) or an exact key."""
    if ref == "latest" or DAY.match(ref):
        found = list_backups(None if ref == "latest" else ref)
        if not found:
            raise BackupError(f"No backup found for {ref!r} in s3://{_bucket()}/{get_settings().backup_prefix}.")
        return found[-1]
    from botocore.exceptions import ClientError

    try:
        head = _s3().head_object(Bucket=_bucket(), Key=ref)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
        raise BackupError(f"No backup with key {ref!r} (give YYYY-MM-DD, 'latest' or a key from "
                          "`backup list`).") from exc
    match = KEY_NAME.search(ref)
    created = (dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
               if match else head["LastModified"])
    return Backup(ref, int(head["ContentLength"]), created)


# ---------------------------------------------------------------- create

def create(database_url: str | None = None) -> tuple[Backup, dict[str, Any]]:
    """Dump, pack with its manifest, encrypt to BACKUP_RECIPIENT and upload; returns the backup and its manifest."""
    import pyrage

    url = database_url or get_settings().session_database_url
    pg_dump, to, bucket = find_tool("pg_dump"), recipients(), _bucket()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    key = backup_key(now)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dialog-backup-") as work:
        folder = Path(work)
        # Count rows in an exported snapshot and let pg_dump read that same snapshot: the counts are exact.
        with psycopg.connect(url, autocommit=False, prepare_threshold=None) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            exported = conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert exported is not None
            manifest = {"format": 2, "created_at": now.isoformat(), "database": database_name(url),
                        "server_version": conn.info.server_version, "row_counts": row_counts(conn)}
            conninfo, env = _tool_args(url)
            _run([pg_dump, "--format=custom", f"--snapshot={exported[0]}", f"--file={folder / DUMP}",
                  f"--dbname={conninfo}"], env, "pg_dump")
            conn.rollback()
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
        with tarfile.open(folder / "backup.tar", "w", format=tarfile.PAX_FORMAT) as tar:
            for name in (MANIFEST, DUMP):
                tar.add(folder / name, arcname=name)
                (folder / name).unlink()  # disk holds at most about two copies of the dump at once
        encrypted = folder / "backup.tar.age"
        pyrage.encrypt_file(str(folder / "backup.tar"), str(encrypted), to)
        (folder / "backup.tar").unlink()
        size = encrypted.stat().st_size
        _s3().upload_file(str(encrypted), bucket, key, ExtraArgs={
            "ContentType": "application/octet-stream", "Metadata": {"format": "dialog-engine-backup-2-age"}})
    manifest["seconds"] = round(time.perf_counter() - started, 2)
    return Backup(key, size, now), manifest


# ---------------------------------------------------------------- restore and verify

def fetch(backup: Backup, work: Path) -> tuple[dict[str, Any], Path]:
    """Download and decrypt into `work`; returns (manifest, dump path). Raises before anything is usable."""
    import pyrage

    encrypted, plain = work / "backup.tar.age", work / "backup.tar"
    keys = identities()  # before the download: a machine without the identity learns that at once
    _s3().download_file(_bucket(), backup.key, str(encrypted))
    with open(encrypted, "rb") as src:
        head = src.read(len(AGE_MAGIC))
    if head.startswith(OLD_MAGIC):
        raise DecryptionError(
            f"{backup.key} is in the earlier passphrase format (DLGBAK1), which this version no longer reads; "
            "nothing was restored. Restore it with the release before the switch to age (its `backup restore` "
            "and BACKUP_PASSPHRASE), or let it expire once newer age backups exist.")
    if head != AGE_MAGIC:
        raise DecryptionError(f"{backup.key} is not an age file (its header was altered?); nothing was restored.")
    try:
        pyrage.decrypt_file(str(encrypted), str(plain), keys)
    except pyrage.DecryptError as exc:
        reason = ("it was not encrypted to this identity (BACKUP_IDENTITY is not the private key of the "
                  "BACKUP_RECIPIENT it was made with)" if "no matching keys" in str(exc).lower()
                  else f"its header was altered or is not age ({exc})")
        raise DecryptionError(f"{backup.key} cannot be decrypted: {reason}; nothing was restored.") from None
    except OSError:
        raise DecryptionError(f"{backup.key} fails authentication: it was altered, truncated or corrupted; "
                              "nothing was restored.") from None
    finally:
        encrypted.unlink()
    return _unpack(backup, plain, work)


def _unpack(backup: Backup, plain: Path, work: Path) -> tuple[dict[str, Any], Path]:
    """manifest.json and database.dump out of the decrypted tar; nothing else in it is accepted or written."""
    try:
        with tarfile.open(plain, "r:") as tar:
            members = {m.name: m for m in tar.getmembers()}
            if set(members) != {MANIFEST, DUMP} or not all(m.isfile() for m in members.values()):
                raise DecryptionError(f"{backup.key} decrypted but does not hold exactly {MANIFEST} and {DUMP}; "
                                      "it was not made by `backup create`.")
            manifest_file, dump_file = tar.extractfile(members[MANIFEST]), tar.extractfile(members[DUMP])
            assert manifest_file is not None and dump_file is not None
            manifest = json.loads(manifest_file.read())
            with open(work / DUMP, "wb") as out:
                shutil.copyfileobj(dump_file, out, 1 << 20)
    except (tarfile.TarError, ValueError) as exc:
        raise DecryptionError(f"{backup.key} decrypted but is not a backup archive ({exc}).") from None
    finally:
        plain.unlink()
    return manifest, work / DUMP


def _create_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def database_exists(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=10).close()
        return True
    except psycopg.OperationalError as exc:
        if f'database "{database_name(url)}" does not exist' in str(exc):
            return False
        raise BackupError(f"Cannot reach the target database: {str(exc).strip()}") from exc


def _pg_restore(dump: Path, target_url: str, *, clean: bool) -> None:
    pg_restore = find_tool("pg_restore")
    conninfo, env = _tool_args(target_url)
    # COMMENT ON EXTENSION needs the extension's owner, which managed databases keep for themselves.
    listing = subprocess.run([pg_restore, "--list", str(dump)], capture_output=True, text=True, env=env,
                             check=False)
    if listing.returncode != 0:
        raise BackupError(f"pg_restore cannot read the dump: {listing.stderr.strip()[-1500:]}")
    items = dump.with_suffix(".list")
    items.write_text("".join(line + "\n" for line in listing.stdout.splitlines()
                             if "COMMENT - EXTENSION" not in line))
    args = [pg_restore, "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
            f"--use-list={items}", f"--dbname={conninfo}"]
    _run(args + (["--clean", "--if-exists"] if clean else []) + [str(dump)], env, "pg_restore")


def restore(backup: Backup, target_url: str) -> dict[str, Any]:
    """Replace the target's tables with the backup's (creating the database if missing); returns the manifest."""
    with tempfile.TemporaryDirectory(prefix="dialog-restore-") as work:
        manifest, dump = fetch(backup, Path(work))  # fully decrypted and authenticated first
        exists = database_exists(target_url)
        if not exists:
            _create_database(with_database(target_url, "postgres"), database_name(target_url))
        _pg_restore(dump, target_url, clean=exists)
    _audit_restore(target_url, backup)
    return manifest


def _audit_restore(target_url: str, backup: Backup) -> None:
    """Every workspace's audit log says its data was replaced by a restore (an operator action, no key)."""
    actor = f"operator:{os.environ.get('USER') or 'unknown'}"
    with psycopg.connect(target_url, autocommit=True) as conn:
        conn.execute("""INSERT INTO audit_log (workspace_id, actor, action, target, details)
                        SELECT id, %s, 'backup.restored', %s, '{}'::jsonb FROM workspaces""",
                     (actor, backup.key))


def verify(backup: Backup, database_url: str | None = None) -> VerifyResult:
    """Restore into `<db>_verify_<ts>` next to the database, compare row counts table by table, drop it."""
    url = database_url or get_settings().session_database_url
    scratch = f"{database_name(url)[:40]}_verify_{int(time.time())}"
    result = VerifyResult(backup, scratch)
    with tempfile.TemporaryDirectory(prefix="dialog-verify-") as work:
        manifest, dump = fetch(backup, Path(work))
        _create_database(url, scratch)
        try:
            _pg_restore(dump, with_database(url, scratch), clean=False)
            with psycopg.connect(with_database(url, scratch), autocommit=True) as conn:
                restored = row_counts(conn)
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    expected = manifest["row_counts"]
    result.tables = [(name, expected.get(name, -1), restored.get(name, -1))
                     for name in sorted(set(expected) | set(restored))]
    return result
