"""Knowledge re-syncs run the sets that ask for it (`run_on_resync`); a metric that drops against the set's
previous run is recorded on the run (`alert`) and posted to EVAL_ALERT_WEBHOOK_URL when one is set."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.core.db import Row, execute, fetch_all, fetch_one
from shared.core.settings import get_settings
from shared.evals.scoring import QUALITY, worse_by

log = logging.getLogger("dialog_engine.evals")
WEBHOOK_TIMEOUT_S = 5.0


def on_sync_finished(conn: psycopg.Connection[Row], workspace_id: str, assistant_id: str) -> list[str]:
    """Start a run of every set of the assistant with run_on_resync; returns the run ids. Never raises:
    a knowledge sync must not fail over its evaluation."""
    from shared.evals.runner import create_run

    started = []
    try:
        sets = fetch_all(conn, """SELECT id FROM eval_sets WHERE workspace_id = %s AND assistant_id = %s
                                  AND run_on_resync""", (workspace_id, assistant_id))
        for eval_set in sets:
            started.append(create_run(conn, workspace_id, eval_set["id"], template_version=None, trigger="resync",
                                      actor="resync")["id"])
    except Exception as exc:
        log.warning("starting the evaluation runs after a sync of %s failed: %s", assistant_id, type(exc).__name__)
    return started


def dropped_metrics(previous: dict[str, Any], current: dict[str, Any]) -> list[dict[str, Any]]:
    tolerance = get_settings().eval_gate_tolerance
    drops = []
    for metric in QUALITY:
        worse = worse_by(metric, previous.get(metric), current.get(metric))
        if worse is not None and worse > tolerance + 1e-9:
            drops.append({"metric": metric, "previous": previous.get(metric), "current": current.get(metric)})
    return drops


def after_run(conn: psycopg.Connection[Row], workspace_id: str, run_id: str) -> None:
    """For a re-sync's run: compare with the set's previous succeeded run; record and post any drop."""
    run = fetch_one(conn, """SELECT id, set_id, assistant_id, template_id, template_version, trigger, metrics,
                                    created_at FROM eval_runs WHERE id = %s AND workspace_id = %s""",
                    (run_id, workspace_id))
    if run is None or run["trigger"] != "resync":
        return
    previous = fetch_one(conn, """SELECT id, metrics FROM eval_runs
                                  WHERE workspace_id = %s AND set_id = %s AND status = 'succeeded' AND id <> %s
                                    AND created_at <= %s
                                  ORDER BY created_at DESC, id DESC LIMIT 1""",
                         (workspace_id, run["set_id"], run_id, run["created_at"]))
    if previous is None:
        return
    drops = dropped_metrics(previous["metrics"] or {}, run["metrics"] or {})
    if not drops:
        return
    alert: dict[str, Any] = {"event": "eval.metrics_dropped", "workspace_id": workspace_id, "run_id": run_id,
                             "previous_run_id": previous["id"], "set_id": run["set_id"],
                             "assistant_id": run["assistant_id"], "template_id": run["template_id"],
                             "template_version": run["template_version"], "dropped": drops}
    alert["delivered"] = _post(alert)
    execute(conn, "UPDATE eval_runs SET alert = %s WHERE id = %s", (Jsonb(alert), run_id))


def _post(alert: dict[str, Any]) -> bool | None:
    """POST the alert to EVAL_ALERT_WEBHOOK_URL (None when unset); one try, bounded: the run is stored already."""
    url = get_settings().eval_alert_webhook_url
    if not url:
        return None
    import httpx

    try:
        reply = httpx.post(url, json=alert, timeout=WEBHOOK_TIMEOUT_S)
        reply.raise_for_status()
        return True
    except httpx.HTTPError as exc:
        log.warning("the evaluation alert webhook failed: %s", type(exc).__name__)
        return False
