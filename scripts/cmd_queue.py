"""`queue init` and `queue schedules`: vercel.json's crons as QStash schedules, for those who prefer QStash.

The schedules are read from vercel.json's "crons", so the two never drift. Each gets the id
`dialog-engine-cron-<name>`: QStash overwrites a schedule created with an existing id, so running init
again updates in place, and a schedule of ours whose cron left vercel.json is deleted. QStash calls
`GET PUBLIC_URL/api/cron/<name>` exactly as Vercel Cron does, with `Authorization: Bearer CRON_SECRET`
(sent as `Upstash-Forward-Authorization`, delivered as `Authorization`). Running both Vercel Cron and
these schedules is harmless: the cron route queues at most one job per name and minute.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEDULE_PREFIX = "dialog-engine-cron-"
# Not in vercel.json: a Vercel function has no pg_dump, so there the nightly backup runs in CI
# (.github/workflows/backup.yml). Where the app has pg_dump (the Docker image), `queue init --backup` adds it.
BACKUP_CRON = {"name": "backup", "path": "/api/cron/backup", "schedule": "0 2 * * *"}


def register(groups: argparse._SubParsersAction) -> None:
    queue = groups.add_parser("queue", help="QStash setup").add_subparsers(dest="command", required=True)
    init_ = queue.add_parser("init", help="create or update a QStash schedule for every cron in vercel.json "
                                          "(idempotent)")
    init_.add_argument("--backup", action="store_true", help="also the nightly backup job at 02:00 UTC (self-hosted: "
                                                             "the app's image has pg_dump; on Vercel CI runs it)")
    init_.set_defaults(func=cmd_init)
    queue.add_parser("schedules", help="list the QStash schedules").set_defaults(func=cmd_schedules)


def vercel_crons(root: Path = ROOT) -> list[dict[str, str]]:
    """[{name, path, schedule}] from vercel.json; the name is the last path segment (/api/cron/<name>)."""
    crons = json.loads((root / "vercel.json").read_text()).get("crons", [])
    return [{"name": c["path"].rstrip("/").rsplit("/", 1)[-1], "path": c["path"], "schedule": c["schedule"]}
            for c in crons]


def _client() -> Any:
    from qstash import QStash

    from shared.core.settings import get_settings

    settings = get_settings()
    missing = [name for name in ("qstash_token", "cron_secret") if not getattr(settings, name)]
    if missing:
        raise RuntimeError("set " + " and ".join(m.upper() for m in missing) + " first (see .env.example)")
    return QStash(settings.qstash_token, base_url=settings.qstash_url or None)


def init(backup: bool = False) -> list[dict[str, str]]:
    """Upsert one schedule per vercel.json cron (and the backup's with `backup`) and delete our stale ones;
    returns what was set up."""
    from shared.core.settings import get_settings

    settings = get_settings()
    client, base = _client(), settings.public_url.rstrip("/")
    wanted = []
    for cron in vercel_crons() + ([BACKUP_CRON] if backup else []):
        schedule_id = client.schedule.create(
            destination=f"{base}{cron['path']}", cron=cron["schedule"], method="GET",
            headers={"Authorization": f"Bearer {settings.cron_secret}"},
            schedule_id=SCHEDULE_PREFIX + cron["name"], retries=3)
        wanted.append({**cron, "schedule_id": schedule_id, "destination": f"{base}{cron['path']}"})
    keep = {w["schedule_id"] for w in wanted}
    for schedule in client.schedule.list():
        if schedule.schedule_id.startswith(SCHEDULE_PREFIX) and schedule.schedule_id not in keep:
            client.schedule.delete(schedule.schedule_id)
            wanted.append({"name": schedule.schedule_id.removeprefix(SCHEDULE_PREFIX), "removed": "yes",
                           "schedule_id": schedule.schedule_id, "schedule": schedule.cron,
                           "destination": schedule.destination})
    return wanted


def cmd_init(args: argparse.Namespace) -> int:
    from shared.core.settings import get_settings

    settings = get_settings()
    if not settings.qstash_url and any(h in settings.public_url for h in ("localhost", "127.0.0.1")):
        print(f"warning: PUBLIC_URL is {settings.public_url}; hosted QStash cannot reach it", file=sys.stderr)
    for item in init(args.backup):
        action = "removed" if item.get("removed") else "ok"
        print(f"{action:8} {item['schedule_id']:34} {item['schedule']:14} GET {item['destination']}")
    return 0


def cmd_schedules(args: argparse.Namespace) -> int:
    schedules = _client().schedule.list()
    if not schedules:
        print("no schedules (run `python -m scripts queue init`)")
    for s in schedules:
        state = "paused" if s.paused else "active"
        print(f"{s.schedule_id:34} {s.cron:14} {state:7} {s.method} {s.destination}")
    return 0
