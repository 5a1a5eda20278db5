"""Fixtures for backup tests: S3 over HTTP (moto's server), an age key pair and `backups`, which points the
engine's backup settings at a fresh bucket. A fixture plugin (tests/conftest.py registers it); boto3 and moto
are imported only when a test asks for them."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.plugins.stack import clear_caches

ROOT = Path(__file__).resolve().parents[2]


def key_pair() -> tuple[str, str]:
    from pyrage import x25519

    identity = x25519.Identity.generate()
    return str(identity), str(identity.to_public())


IDENTITY, RECIPIENT = key_pair()


@pytest.fixture(scope="module")
def s3_url():
    """S3 over HTTP: moto's server, one per test module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class Backups:
    def __init__(self, engine, s3_url: str, bucket: str) -> None:
        import boto3

        self.engine, self.bucket = engine, bucket
        self.s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="testing",
                               aws_secret_access_key="testing")
        self.env = {"BACKUP_BUCKET": bucket, "BACKUP_RECIPIENT": RECIPIENT, "BACKUP_IDENTITY": IDENTITY,
                    "BACKUP_S3_ENDPOINT_URL": s3_url,
                    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """`python -m scripts backup ...` in a fresh interpreter, stdin closed (no terminal to confirm on)."""
        return subprocess.run([sys.executable, "-m", "scripts", "backup", *args], cwd=ROOT, text=True,
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=120, check=False,
                              env={**os.environ, **self.env, **env})

    def run(self, *args: str) -> tuple[int, str, str]:
        """The same command in this process (faster), returning (exit code, stdout, stderr)."""
        from scripts.__main__ import main

        out, err = io.StringIO(), io.StringIO()
        real = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            code = main(["backup", *args])
        finally:
            sys.stdout, sys.stderr = real
        return code, out.getvalue(), err.getvalue()

    def keys(self) -> list[str]:
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])]

    def other_db(self, name: str) -> str:
        return self.engine.stack.dsn(f"{name}_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def backups(engine, s3_url, monkeypatch):
    bucket = f"backups-{uuid.uuid4().hex[:12]}"
    b = Backups(engine, s3_url, bucket)
    b.s3.create_bucket(Bucket=bucket)
    for name, value in b.env.items():
        monkeypatch.setenv(name, value)
    clear_caches()
    for name in ("Acme", "Globex", "Initech"):
        engine.workspace(name)
    yield b
    with psycopg.connect(engine.stack.admin_dsn, autocommit=True) as conn:
        for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'restored_%' "
                                "OR datname LIKE '%_verify_%'").fetchall():
            conn.execute(f'DROP DATABASE IF EXISTS "{row[0]}" WITH (FORCE)')
