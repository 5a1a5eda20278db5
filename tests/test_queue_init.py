"""`queue init`: vercel.json's crons as QStash schedules (the stand-in speaks QStash's schedule API)."""

from __future__ import annotations

import os

from scripts.__main__ import main
from scripts.cmd_queue import SCHEDULE_PREFIX, vercel_crons


def test_queue_init_creates_the_vercel_crons_once_and_drops_stale_ones(engine, qstash, capsys):
    from api.cron import CRON_JOBS

    crons = vercel_crons()
    assert crons and {c["name"] for c in crons} <= set(CRON_JOBS)  # every cron has a job behind it
    # A schedule of ours whose cron left vercel.json, and somebody else's schedule.
    qstash.post(f"/v2/schedules/{engine.url}/api/cron/retired",
                headers={"Upstash-Cron": "0 0 * * *", "Upstash-Schedule-Id": SCHEDULE_PREFIX + "retired"})
    qstash.post("/v2/schedules/https://example.org/hook",
                headers={"Upstash-Cron": "0 0 * * *", "Upstash-Schedule-Id": "someone-else"})

    assert main(["queue", "init"]) == 0
    first = capsys.readouterr().out
    assert "removed  dialog-engine-cron-retired" in first
    assert main(["queue", "init"]) == 0  # idempotent
    assert "removed" not in capsys.readouterr().out

    schedules = qstash.get("/v2/schedules").json()
    ours = {s["scheduleId"]: s for s in schedules if s["scheduleId"].startswith(SCHEDULE_PREFIX)}
    assert sorted(ours) == sorted(SCHEDULE_PREFIX + c["name"] for c in crons)  # no duplicates, none stale
    assert {(s["destination"], s["cron"]) for s in ours.values()} == {
        (f"{engine.url}{c['path']}", c["schedule"]) for c in crons}
    assert "someone-else" in {s["scheduleId"] for s in schedules}
    for schedule in ours.values():
        assert schedule["method"] == "GET"  # /api/cron/* answers GET, as Vercel Cron calls it
        assert schedule["header"] == {"Authorization": [f"Bearer {os.environ['CRON_SECRET']}"]}

    assert main(["queue", "schedules"]) == 0
    listed = capsys.readouterr().out
    assert all(SCHEDULE_PREFIX + c["name"] in listed for c in crons)


def test_the_forwarded_cron_secret_reaches_the_cron_route(engine, qstash, capsys):
    from qstash import QStash

    assert main(["queue", "init"]) == 0
    capsys.readouterr()
    schedule = qstash.get(f"/v2/schedules/{SCHEDULE_PREFIX}cleanup").json()
    forward = {name: values[0] for name, values in schedule["header"].items()}
    client = QStash(os.environ["QSTASH_TOKEN"], base_url=os.environ["QSTASH_URL"])
    # What the schedule will send, sent now; and the same call without the header for contrast.
    sent = client.message.publish(url=schedule["destination"], method="GET", headers=forward, retries=0)
    unsigned = client.message.publish(url=schedule["destination"], method="GET", retries=0)
    engine.wait_for_queue()
    delivered = qstash.get(f"/v2/messages/{sent.message_id}").json()
    refused = qstash.get(f"/v2/messages/{unsigned.message_id}").json()
    assert (delivered["state"], delivered["retried"]) == ("DELIVERED", 0)
    assert refused["state"] == "FAILED"
