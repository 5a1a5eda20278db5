"""Encrypted database backups: pg_dump -> encrypt -> S3, and back; verify restores into a scratch database.

A backup is one S3 object `<prefix>/YYYY/MM/DD/dialog-engine-YYYYmmddTHHMMSSZ.dump.enc` (see
shared/backup_crypto.py for the format and why it is not gpg). Inside, after a length-prefixed JSON
manifest (row counts per table, taken in the very snapshot pg_dump reads), is a custom-format
(`pg_dump -Fc`) dump. Restores decrypt the whole object to a temporary file first, so a tampered or
wrong-key backup is refused before pg_restore sees a byte, and pg_restore runs in one transaction.

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
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.backup_crypto import DecryptionError, EncryptingWriter, decrypt_chunks
from shared.settings import get_settings

KEY_NAME = re.compile(r"dialog-engine-(\d{8}T\d{6}Z)\.dump\.enc$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
READ_SIZE = 1 << 20

__all__ = ["BackupError", "DecryptionError", "NotConfigured", "ToolMissing", "create", "list_backups", "resolve", "restore",
           "verify"]


class BackupError(Exception):
    """A backup operation cannot go on; the message tells the operator what to do."""


class ToolMissing(BackupError):
    """pg_dump or pg_restore is not installed where this runs."""


class NotConfigured(BackupError):
    """BACKUP_BUCKET or BACKUP_PASSPHRASE is missing."""


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


def _passphrase() -> str:
    passphrase = get_settings().backup_passphrase
    if not passphrase:
        raise NotConfigured("Set BACKUP_PASSPHRASE: backups are always encrypted, and restoring needs the same one.")
    return passphrase


def backup_key(now: dt.datetime) -> str:
    prefix = get_settings().backup_prefix.strip("/")
    return f"{prefix}/{now:%Y/%m/%d}/dialog-engine-{now:%Y%m%dT%H%M%SZ}.dump.enc"


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
    """Dump, encrypt and upload; returns the backup and its manifest."""
    url = database_url or get_settings().database_url
    pg_dump, passphrase, bucket = find_tool("pg_dump"), _passphrase(), _bucket()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    key = backup_key(now)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dialog-backup-") as work:
        encrypted = Path(work) / "backup.enc"
        # Count rows in an exported snapshot and let pg_dump read that same snapshot: the counts are exact.
        with psycopg.connect(url, autocommit=False, prepare_threshold=None) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            exported = conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert exported is not None
            snapshot = exported[0]
            manifest = {"format": 1, "created_at": now.isoformat(), "database": database_name(url),
                        "server_version": conn.info.server_version, "row_counts": row_counts(conn)}
            conninfo, env = _tool_args(url)
            with open(encrypted, "wb") as out, tempfile.TemporaryFile() as errors:
                writer = EncryptingWriter(out, passphrase)
                body = json.dumps(manifest).encode()
                writer.write(struct.pack(">I", len(body)) + body)
                proc = subprocess.Popen([pg_dump, "--format=custom", f"--snapshot={snapshot}",
                                         f"--dbname={conninfo}"], stdout=subprocess.PIPE, stderr=errors, env=env)
                assert proc.stdout is not None
                try:
                    while chunk := proc.stdout.read(READ_SIZE):
                        writer.write(chunk)
                except BaseException:
                    proc.kill()  # we stopped reading early: don't leave pg_dump behind
                    raise
                if proc.wait() != 0:
                    errors.seek(0)
                    raise BackupError(f"pg_dump failed (exit {proc.returncode}): "
                                      f"{errors.read().decode(errors='replace').strip()[-1500:]}")
                writer.close()
            conn.rollback()
        size = encrypted.stat().st_size
        _s3().upload_file(str(encrypted), bucket, key, ExtraArgs={
            "ContentType": "application/octet-stream", "Metadata": {"format": "dialog-engine-backup-1"}})
    manifest["seconds"] = round(time.perf_counter() - started, 2)
    return Backup(key, size, now), manifest


# ---------------------------------------------------------------- restore and verify

def fetch(backup: Backup, work: Path) -> tuple[dict[str, Any], Path]:
    """Download and decrypt into `work`; returns (manifest, dump path). Raises before anything is usable."""
    encrypted, dump = work / "backup.enc", work / "backup.dump"
    _s3().download_file(_bucket(), backup.key, str(encrypted))
    passphrase = _passphrase()
    with open(encrypted, "rb") as src, open(dump, "wb") as out:
        header = b""
        manifest_size: int | None = None
        for chunk in decrypt_chunks(src, passphrase):
            if manifest_size is None:  # the manifest sits at the very start of the plaintext
                header += chunk
                if len(header) < 4 or len(header) < 4 + struct.unpack(">I", header[:4])[0]:
                    continue
                manifest_size = struct.unpack(">I", header[:4])[0]
                manifest = json.loads(header[4:4 + manifest_size])
                chunk = header[4 + manifest_size:]
            out.write(chunk)
    encrypted.unlink()
    if manifest_size is None:
        raise DecryptionError("The backup decrypted but holds no manifest; it was not made by `backup create`.")
    return manifest, dump


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
    url = database_url or get_settings().database_url
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
