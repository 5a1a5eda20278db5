"""Backups end to end: real pg_dump/pg_restore (pgserver), S3 over HTTP (moto's server), the CLI as operators run it.
Encrypted with age to a public key: the side that makes backups has only BACKUP_RECIPIENT."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import subprocess

import psycopg

from tests.fakes.backup_fixtures import IDENTITY, RECIPIENT, key_pair
from tests.plugins.stack import clear_caches


def workspace_names(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return sorted(r[0] for r in conn.execute("SELECT name FROM workspaces").fetchall())


def database_exists(stack, dsn: str) -> bool:
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(stack.admin_dsn) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_create_list_verify_and_restore_through_the_cli(backups, engine):
    made = backups.cli("create")
    assert made.returncode == 0, made.stderr
    today = dt.datetime.now(dt.UTC)
    key = re.search(r"created (\S+)", made.stdout).group(1)
    assert re.fullmatch(rf"backups/{today:%Y/%m/%d}/dialog-engine-{today:%Y%m%d}T\d{{6}}Z\.tar\.age", key)
    assert backups.keys() == [key]
    # The object in S3 is ciphertext: no table name or workspace name shows through.
    body = backups.s3.get_object(Bucket=backups.bucket, Key=key)["Body"].read()
    assert b"workspaces" not in body and b"Globex" not in body and body.startswith(b"age-encryption.org/v1\n")

    code, out, _ = backups.run("list")
    assert code == 0 and key in out and f"{today:%Y-%m-%d}" in out

    verified = backups.cli("verify")
    print("\n$ python -m scripts backup verify\n" + verified.stdout)  # shown with `pytest -s`
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert re.search(r"public\.workspaces\s+3\s+3\s+ok", verified.stdout)
    assert re.search(r"public\.schema_migrations\s+(\d+)\s+\1\s+ok", verified.stdout)
    assert "MISMATCH" not in verified.stdout
    with psycopg.connect(engine.stack.admin_dsn) as conn:  # the scratch database is gone
        assert not conn.execute("SELECT 1 FROM pg_database WHERE datname LIKE '%_verify_%'").fetchall()

    # Without --yes and without a terminal to confirm on, restore refuses and touches nothing.
    target = backups.other_db("restored")
    refused = backups.cli("restore", f"{today:%Y-%m-%d}", "--target-url", target)
    assert refused.returncode == 2 and "refused" in refused.stderr
    assert not database_exists(engine.stack, target)

    code, out, err = backups.run("restore", f"{today:%Y-%m-%d}", "--target-url", target, "--yes")
    assert code == 0, err
    assert workspace_names(target) == ["Acme", "Globex", "Initech"]
    assert re.search(r"restored \d+ tables, \d+ rows into database .restored_", out)

    # Restoring over a database that changed since brings it back to the backup's rows.
    with engine.db() as conn:
        conn.execute("DELETE FROM workspaces WHERE name = 'Globex'")
        conn.execute("INSERT INTO workspaces (name) VALUES ('Umbrella')")
    code, out, err = backups.run("restore", key, "--yes")
    assert code == 0, err
    assert workspace_names(engine.dsn) == ["Acme", "Globex", "Initech"]
    with engine.db() as conn:  # every workspace's audit log records the restore
        audited = conn.execute("SELECT count(DISTINCT workspace_id) AS n FROM audit_log "
                               "WHERE action = 'backup.restored' AND target = %s", (key,)).fetchone()
    assert audited["n"] == 3


def test_a_tampered_backup_is_refused_and_nothing_is_restored(backups, engine):
    from shared.ops import backup

    made, _ = backup.create()
    original = backups.s3.get_object(Bucket=backups.bucket, Key=made.key)["Body"].read()
    header_end = original.index(b"\n---") + 4
    for position, expected in ((len(original) // 2, "fails authentication"),
                               (10, "is not an age file"),
                               (header_end + 3, "cannot be decrypted"),  # the header's MAC
                               (None, "fails authentication")):
        if position is None:  # truncated, as by an interrupted upload
            altered = original[:-7]
        else:  # one flipped byte
            altered = original[:position] + bytes([original[position] ^ 1]) + original[position + 1:]
        backups.s3.put_object(Bucket=backups.bucket, Key=made.key, Body=altered)
        target = backups.other_db("restored")
        code, _, err = backups.run("restore", made.key, "--target-url", target, "--yes")
        assert code == 1
        assert expected in err and "nothing was restored" in err, (position, err)
        assert not database_exists(engine.stack, target)
    code, _, err = backups.run("verify")
    assert code == 1 and "fails authentication" in err


def test_the_backup_side_needs_only_the_public_key_and_cannot_read_its_backups(backups, engine, monkeypatch):
    monkeypatch.delenv("BACKUP_IDENTITY")  # the machine that makes backups: the recipient only
    clear_caches()
    code, out, err = backups.run("create")
    assert code == 0, err
    target = backups.other_db("restored")
    code, _, err = backups.run("restore", "latest", "--target-url", target, "--yes")
    assert code == 1 and "Set BACKUP_IDENTITY" in err and not database_exists(engine.stack, target)
    code, _, err = backups.run("verify")
    assert code == 1 and "Set BACKUP_IDENTITY" in err

    other_identity, _ = key_pair()  # someone else's private key opens nothing
    monkeypatch.setenv("BACKUP_IDENTITY", other_identity)
    clear_caches()
    code, _, err = backups.run("restore", "latest", "--target-url", target, "--yes")
    assert code == 1 and "not encrypted to this identity" in err and "nothing was restored" in err
    assert not database_exists(engine.stack, target)
    assert IDENTITY not in err and other_identity not in err

    monkeypatch.setenv("BACKUP_IDENTITY", "AGE-SECRET-KEY-1NOTAKEY")
    clear_caches()
    code, _, err = backups.run("restore", "latest", "--target-url", target, "--yes")
    assert code == 1 and "holds no valid age identity" in err and "NOTAKEY" not in err


def test_the_identity_can_come_from_a_file_as_age_keygen_writes_it(backups, engine, monkeypatch, tmp_path):
    code, out, err = backups.run("keygen")
    assert code == 0 and out.count("AGE-SECRET-KEY-1") == 1
    recipient = re.search(r"BACKUP_RECIPIENT=(age1\w+)", err).group(1)
    assert f"# public key: {recipient}" in out
    (tmp_path / "key.txt").write_text(out)
    monkeypatch.setenv("BACKUP_RECIPIENT", recipient)
    monkeypatch.delenv("BACKUP_IDENTITY")
    monkeypatch.setenv("BACKUP_IDENTITY_FILE", str(tmp_path / "key.txt"))
    clear_caches()
    assert backups.run("create")[0] == 0
    code, out, err = backups.run("verify")
    assert code == 0 and "every count matches" in out, err
    monkeypatch.setenv("BACKUP_RECIPIENT", "age1notakey")
    clear_caches()
    code, _, err = backups.run("create")
    assert code == 1 and "BACKUP_RECIPIENT is not an age public key" in err


def test_a_backup_is_a_standard_age_file_holding_a_tar_of_manifest_and_pg_dump(backups, engine, tmp_path):
    """What an operator can do by hand with the age CLI: age -d -i key.txt FILE | tar -x; pg_restore --list."""
    import json
    import tarfile

    import pyrage
    from pyrage import x25519

    from shared.ops import backup

    made, manifest = backup.create()
    body = backups.s3.get_object(Bucket=backups.bucket, Key=made.key)["Body"].read()
    plain = pyrage.decrypt(body, [x25519.Identity.from_str(IDENTITY)])
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        assert tar.getnames() == ["manifest.json", "database.dump"]
        assert json.loads(tar.extractfile("manifest.json").read())["row_counts"] == manifest["row_counts"]
        (tmp_path / "database.dump").write_bytes(tar.extractfile("database.dump").read())
    listing = subprocess.run([backup.find_tool("pg_restore"), "--list", str(tmp_path / "database.dump")],
                             capture_output=True, text=True, check=True)
    assert "TABLE public workspaces" in listing.stdout


def test_a_backup_in_the_old_passphrase_format_is_listed_but_refused_with_what_to_do(backups, engine):
    from shared.ops import backup

    made, _ = backup.create()
    old_key = made.key.replace(".tar.age", ".dump.enc").replace(f"{made.created:%H%M%S}Z", "000000Z")
    backups.s3.put_object(Bucket=backups.bucket, Key=old_key, Body=b"DLGBAK1\n" + os.urandom(200))
    code, out, _ = backups.run("list")
    assert code == 0 and old_key in out and made.key in out
    code, _, err = backups.run("restore", old_key, "--target-url", backups.other_db("restored"), "--yes")
    assert code == 1 and "earlier passphrase format" in err and "nothing was restored" in err
    assert "BACKUP_PASSPHRASE" in err  # says what restores it


def test_lookups_name_what_is_missing(backups, engine):
    code, _, err = backups.run("restore", "1999-01-01", "--yes")
    assert code == 1 and "No backup found for '1999-01-01'" in err
    code, _, err = backups.run("restore", "backups/nope.tar.age", "--yes")
    assert code == 1 and "No backup with key" in err


def test_verify_fails_when_the_restored_rows_differ_from_the_backup(backups, engine, tmp_path):
    """A dump that lost rows (here: a manifest that promises one more workspace) fails verification."""
    import json
    import tarfile

    import pyrage
    from pyrage import x25519

    from shared.ops import backup

    made, _ = backup.create()
    manifest, dump = backup.fetch(made, tmp_path)
    manifest["row_counts"]["public.workspaces"] += 1
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with tarfile.open(tmp_path / "forged.tar", "w") as tar:
        tar.add(tmp_path / "manifest.json", arcname="manifest.json")
        tar.add(dump, arcname="database.dump")
    forged = tmp_path / "forged.tar.age"
    pyrage.encrypt_file(str(tmp_path / "forged.tar"), str(forged), [x25519.Recipient.from_str(RECIPIENT)])
    later = made.created + dt.timedelta(seconds=1)
    backups.s3.upload_file(str(forged), backups.bucket, backup.backup_key(later))
    code, out, _ = backups.run("verify")
    assert code == 1
    assert re.search(r"public\.workspaces\s+4\s+3\s+MISMATCH", out)
    assert "FAILED: 1 of" in out


def test_nightly_cron_writes_a_backup(backups, engine):
    secret = os.environ["CRON_SECRET"]
    reply = engine.client().get("/api/cron/backup", headers={"Authorization": f"Bearer {secret}"})
    assert reply.status_code == 200, reply.text
    engine.wait_for_queue(timeout=60)
    with engine.db() as conn:
        job = conn.execute("SELECT status, error FROM jobs WHERE name = 'backup'").fetchone()
    assert job == {"status": "succeeded", "error": None}
    assert len(backups.keys()) == 1


def test_backup_job_without_pg_dump_fails_at_once_and_says_why(backups, engine, monkeypatch, tmp_path):
    from shared.core.queue import publish

    monkeypatch.setenv("BACKUP_PG_BIN_DIR", str(tmp_path))  # a machine without the client tools (Vercel)
    clear_caches()
    publish("backup", {"cron": "backup"})
    engine.wait_for_queue(timeout=30)
    with engine.db() as conn:
        job = conn.execute("SELECT status, attempts, error FROM jobs WHERE name = 'backup'").fetchone()
    assert job["status"] == "failed" and job["attempts"] == 1  # not retried
    assert "pg_dump was not found" in job["error"] and "runner with pg_dump" in job["error"]
    assert backups.keys() == []


def test_restore_over_an_existing_database_that_is_not_the_local_stack_needs_it_named(backups, engine):
    """--yes alone restores into a new database or the local stack's; over a live one elsewhere it must be named."""
    from urllib.parse import urlsplit

    from tests.fakes.tcp_proxy import TcpProxy, postgres_target

    made = backups.cli("create")
    assert made.returncode == 0, made.stderr
    with engine.db() as conn:
        conn.execute("INSERT INTO workspaces (name) VALUES ('Written after the backup')")
    proxy = TcpProxy(postgres_target(engine.dsn))  # the same database under a production-looking host name
    database = urlsplit(engine.dsn).path.lstrip("/")
    live = f"postgresql://postgres@db.prod.internal:{proxy.port}/{database}?hostaddr=127.0.0.1"
    try:
        refused = backups.cli("restore", "latest", "--target-url", live, "--yes")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"--allow-remote {database}" in refused.stderr and "nothing was restored" in refused.stderr
        assert "Written after the backup" in workspace_names(engine.dsn)
        wrong = backups.cli("restore", "latest", "--target-url", live, "--allow-remote", "other")
        assert wrong.returncode == 2 and "Written after the backup" in workspace_names(engine.dsn)
        named = backups.cli("restore", "latest", "--target-url", live, "--allow-remote", database)
        assert named.returncode == 0, named.stderr
        assert workspace_names(engine.dsn) == ["Acme", "Globex", "Initech"]
    finally:
        proxy.close()
