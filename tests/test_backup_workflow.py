"""Backups run somewhere real: Vercel Cron no longer schedules a backup it cannot make (no pg_dump in a function);
.github/workflows/backup.yml does, holding only the public key, and its steps work as written: they are run
here against the test database and an S3 over HTTP, `${{ secrets.* }}` / `${{ vars.* }}` filled in."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from scripts.__main__ import main
from scripts.cmd_queue import SCHEDULE_PREFIX, vercel_crons
from shared.core.settings import Settings
from tests.conftest import ROOT
from tests.test_backup import IDENTITY, RECIPIENT
from tests.test_runbook import exit_code

WORKFLOW = ROOT / ".github" / "workflows" / "backup.yml"
NOT_SETTINGS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def expression(value: str, context: dict[str, dict[str, str]]) -> str:
    """`${{ secrets.X }}`, `${{ vars.X || 'default' }}` as GitHub Actions evaluates them (unset = empty)."""
    def one(match: re.Match[str]) -> str:
        for alternative in match.group(1).split("||"):
            alternative = alternative.strip()
            if alternative.startswith("'"):
                return alternative.strip("'")
            kind, _, name = alternative.partition(".")
            if context.get(kind, {}).get(name):
                return context[kind][name]
        return ""

    return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", one, str(value))


def job_env(name: str, context: dict[str, dict[str, str]]) -> dict[str, str]:
    spec = workflow()
    raw = {**spec.get("env", {}), **spec["jobs"][name].get("env", {})}
    return {key: expression(value, context) for key, value in raw.items()}


def script_commands(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if str(step.get("run", "")).startswith("python -m scripts")]


def test_vercel_no_longer_schedules_a_backup_it_cannot_make() -> None:
    assert "backup" not in {cron["name"] for cron in vercel_crons()}
    on = workflow()[True]  # YAML 1.1 reads the key `on` as true
    assert on["schedule"][0]["cron"] == "0 2 * * *" and "workflow_dispatch" in on


def test_the_backup_job_holds_only_the_public_key_and_installs_pg_dump_16() -> None:
    spec = workflow()
    backup, verify = spec["jobs"]["backup"], spec["jobs"]["verify"]
    made = {**spec["env"], **backup["env"]}
    assert "BACKUP_RECIPIENT" in made
    assert not {"BACKUP_IDENTITY", "BACKUP_IDENTITY_FILE"} & set(made)
    assert "BACKUP_IDENTITY" not in json.dumps([spec["env"], backup])  # not even through a step
    assert any("postgresql-client-16" in str(step.get("run", "")) for step in backup["steps"])
    assert "python -m scripts backup create" in script_commands(backup)
    # The private key is only in the verify job, behind a GitHub Environment of its own.
    assert verify["environment"] and verify["env"]["BACKUP_IDENTITY"] == "${{ secrets.BACKUP_IDENTITY }}"
    assert verify["services"]["scratch"]["image"].endswith(":pg16")
    assert any("backup verify" in command for command in script_commands(verify))
    # Every variable the workflow sets is a setting (or boto3's), and every command exists as written.
    names = {n for f, info in Settings.model_fields.items()
             for n in (info.validation_alias.choices if info.validation_alias else [f.upper()])}  # type: ignore[union-attr]
    for job in ("backup", "verify"):
        assert set(job_env(job, {})) - NOT_SETTINGS <= names | {"DATABASE_URL"}
        for command in script_commands(spec["jobs"][job]):
            words = shlex.split(command.replace('"$DATABASE_URL"', "x"))[3:]
            assert exit_code(words) == 0, command


def run_step(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if not Path(env.get("BACKUP_PG_BIN_DIR", "")).is_dir():
        env.pop("BACKUP_PG_BIN_DIR", None)  # the runner's apt path; here pgserver's pg_dump 16 serves
    full = {**os.environ, **env}
    words = [re.sub(r"\$(\w+)", lambda m: full.get(m.group(1), m.group(0)), word) for word in shlex.split(command)]
    return subprocess.run([sys.executable, *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          check=False, env=full, stdin=subprocess.DEVNULL)


def test_the_workflows_steps_make_and_verify_a_backup(backups, engine, monkeypatch) -> None:
    # What the backup job would find in the repository's settings.
    for name in ("BACKUP_IDENTITY", "BACKUP_RECIPIENT"):  # set by the fixture; the workflow decides here
        monkeypatch.delenv(name, raising=False)
    context = {"secrets": {"DATABASE_URL_UNPOOLED": engine.dsn, "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing"},
               "vars": {"BACKUP_BUCKET": backups.bucket, "BACKUP_RECIPIENT": RECIPIENT, "AWS_REGION": "us-east-1",
                        "BACKUP_S3_ENDPOINT_URL": backups.env["BACKUP_S3_ENDPOINT_URL"]}}
    spec = workflow()
    for command in script_commands(spec["jobs"]["backup"]):
        done = run_step(command, job_env("backup", context))
        assert done.returncode == 0, (command, done.stdout + done.stderr)
    assert len(backups.keys()) == 1
    # The verify job: its environment's secret, and the service container (here: the test stack's server).
    context["secrets"]["BACKUP_IDENTITY"] = IDENTITY
    env = job_env("verify", context)
    assert env["DATABASE_URL"].startswith("postgresql://postgres:verify@localhost:5432/")
    env["DATABASE_URL"] = engine.stack.admin_dsn
    [command] = script_commands(spec["jobs"]["verify"])
    verified = run_step(command, env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert re.search(r"public\.workspaces\s+3\s+3\s+ok", verified.stdout)
    # Without the identity (the backup job's situation) nothing can be read.
    env.pop("BACKUP_IDENTITY")
    assert run_step(command, env).returncode == 1


def test_self_hosted_queue_init_adds_the_nightly_backup_on_request(engine, qstash, capsys) -> None:
    assert main(["queue", "init"]) == 0
    ids = {s["scheduleId"] for s in qstash.get("/v2/schedules").json()}
    assert SCHEDULE_PREFIX + "backup" not in ids
    assert main(["queue", "init", "--backup"]) == 0
    schedules = {s["scheduleId"]: s for s in qstash.get("/v2/schedules").json()}
    backup = schedules[SCHEDULE_PREFIX + "backup"]
    assert backup["cron"] == "0 2 * * *" and backup["destination"].endswith("/api/cron/backup")
