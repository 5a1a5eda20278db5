"""Gates: a template whose new versions must pass an evaluation set before its assistants follow them.

Ungated (the default), every change to a template is a new latest version that its assistants follow at once.
Setting a gate (`{set_id, tolerances}`) freezes `published_version` at the current latest: later changes
are drafts, which assistants following the template do not see (assistants pinned to a version stay pinned).
Publishing a version asks for a succeeded run of the gate's set at that version and compares its metrics
with the latest succeeded run at the published version: any metric worse by more than its tolerance refuses
the publish (409 with the failing metrics). An admin may override; the route records it in the audit log.
Removing the gate makes assistants follow the latest version again.

Tolerances: absolute for quality shares (hit@5 = 0.02 allows 0.90 -> 0.88), relative for latency, tokens
and cost (ttft_p95_ms = 0.2 allows 20 % slower); a metric not named takes EVAL_GATE_TOLERANCE when it is a
quality metric and is not checked when it is latency, tokens or cost (too noisy to gate on by default).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.core.db import Row, execute, fetch_one
from shared.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from shared.core.settings import get_settings
from shared.evals.scoring import LOWER_IS_BETTER, QUALITY, worse_by
from shared.workspace.assistants import invalidate_template_users

GATEABLE = (*QUALITY, *LOWER_IS_BETTER)
LATEST_RUN = """
    SELECT id, metrics, created_at FROM eval_runs
    WHERE workspace_id = %s AND set_id = %s AND template_id = %s AND template_version = %s AND status = 'succeeded'
    ORDER BY finished_at DESC, id DESC LIMIT 1"""


def _template(conn: psycopg.Connection[Row], workspace_id: str, template_id: str) -> Row:
    row = fetch_one(conn, """SELECT id, workspace_id, latest_version, published_version, gate FROM templates
                             WHERE id = %s AND (workspace_id = %s OR workspace_id IS NULL) FOR UPDATE""",
                    (template_id, workspace_id))
    if row is None:
        raise NotFound(f"No template {template_id!r} in this workspace.", code="template_not_found")
    if row["workspace_id"] is None:
        raise Forbidden("The built-in template can't be gated; create a template of your own instead.",
                        code="builtin_template_read_only")
    return row


def tolerances(gate: dict[str, Any]) -> dict[str, float]:
    """Every metric the gate checks, with its tolerance."""
    default = get_settings().eval_gate_tolerance
    return {**dict.fromkeys(QUALITY, default), **(gate.get("tolerances") or {})}


def set_gate(conn: psycopg.Connection[Row], workspace_id: str, template_id: str, set_id: str,
             given: dict[str, float]) -> Row:
    """Gate the template on `set_id`, whose assistant must be built on it; the current latest is published."""
    unknown = sorted(set(given) - set(GATEABLE))
    if unknown:
        raise Unprocessable(f"Unknown metric {unknown[0]!r} in tolerances (known: {', '.join(GATEABLE)}).",
                            code="unknown_metric", details={"metrics": unknown})
    with conn.transaction():
        _template(conn, workspace_id, template_id)
        eval_set = fetch_one(conn, """SELECT s.id, a.template_id FROM eval_sets s
                                      JOIN assistants a ON a.id = s.assistant_id
                                      WHERE s.id = %s AND s.workspace_id = %s""", (set_id, workspace_id))
        if eval_set is None:
            raise NotFound(f"No evaluation set {set_id!r} in this workspace.", code="eval_set_not_found")
        if eval_set["template_id"] != template_id:
            raise Unprocessable("The set's assistant is not built on this template, so its runs can't judge it.",
                                code="eval_set_not_on_template")
        row = fetch_one(conn, """UPDATE templates SET gate = %s, published_version = coalesce(published_version,
                                                                                            latest_version)
                                 WHERE id = %s AND workspace_id = %s
                                 RETURNING id, latest_version, published_version, gate""",
                        (Jsonb({"set_id": set_id, "tolerances": given}), template_id, workspace_id))
        assert row is not None
        invalidate_template_users(conn, workspace_id, template_id)
    return row


def drop_gate(conn: psycopg.Connection[Row], workspace_id: str, template_id: str) -> Row:
    """No gate: assistants follow the latest version again (drafts go live)."""
    with conn.transaction():
        _template(conn, workspace_id, template_id)
        row = fetch_one(conn, """UPDATE templates SET gate = NULL, published_version = NULL
                                 WHERE id = %s AND workspace_id = %s
                                 RETURNING id, latest_version, published_version, gate""", (template_id, workspace_id))
        assert row is not None
        invalidate_template_users(conn, workspace_id, template_id)
    return row


def refuse_if_gating(conn: psycopg.Connection[Row], workspace_id: str, set_id: str) -> None:
    """A set a template is gated on can't be deleted: its assistants would jump to an unchecked version."""
    row = fetch_one(conn, "SELECT id FROM templates WHERE workspace_id = %s AND gate->>'set_id' = %s LIMIT 1",
                    (workspace_id, set_id))
    if row is not None:
        raise Conflict("A template is gated on this set; remove the gate first.", code="eval_set_in_use",
                       details={"template_id": row["id"]})


def check(conn: psycopg.Connection[Row], workspace_id: str, template: Row, version: int) -> dict[str, Any]:
    """The gate's verdict on `version`: the runs compared and every metric worse than its tolerance allows."""
    gate = template["gate"]
    candidate = fetch_one(conn, LATEST_RUN, (workspace_id, gate["set_id"], template["id"], version))
    baseline = None
    if template["published_version"] is not None and template["published_version"] != version:
        baseline = fetch_one(conn, LATEST_RUN, (workspace_id, gate["set_id"], template["id"],
                                                template["published_version"]))
    verdict: dict[str, Any] = {"set_id": gate["set_id"], "version": version,
                               "published_version": template["published_version"],
                               "candidate_run_id": candidate["id"] if candidate else None,
                               "baseline_run_id": baseline["id"] if baseline else None, "failing": []}
    if candidate is None:
        verdict["passed"] = False
        return verdict
    for metric, tolerance in tolerances(gate).items():
        base = baseline["metrics"].get(metric) if baseline else None
        new = candidate["metrics"].get(metric)
        worse = worse_by(metric, base, new)
        if worse is not None and worse > tolerance + 1e-9:
            verdict["failing"].append({"metric": metric, "published": base, "candidate": new,
                                       "worse_by": round(worse, 4), "tolerance": tolerance})
    verdict["passed"] = not verdict["failing"]
    return verdict


def publish(conn: psycopg.Connection[Row], workspace_id: str, template_id: str, version: int, *,
            override: bool) -> dict[str, Any]:
    """Make `version` the one assistants follow, if the gate passes it (or `override`); call in a transaction.
    Returns the verdict plus `previous`; raises Conflict (409) with the verdict when the gate refuses."""
    template = _template(conn, workspace_id, template_id)
    if template["gate"] is None:
        raise Conflict("This template has no gate: each version is live as soon as it is made. Set a gate "
                       "(PUT /api/templates/{id}/gate) to publish versions deliberately.", code="template_not_gated")
    if not 1 <= version <= template["latest_version"]:
        raise NotFound(f"Template {template_id!r} has no version {version}.", code="template_version_not_found")
    verdict = check(conn, workspace_id, template, version)
    if not verdict["passed"] and not override:
        if verdict["candidate_run_id"] is None:
            raise Conflict(f"Version {version} has no finished run of the gate's set {verdict['set_id']}; run it "
                           "first (POST /api/evals/runs with template_version).", code="eval_run_required",
                           details=verdict)
        names = ", ".join(f["metric"] for f in verdict["failing"])
        raise Conflict(f"Version {version} is worse than the published version on {names}.",
                       code="eval_gate_failed", details=verdict)
    execute(conn, "UPDATE templates SET published_version = %s, updated_at = now() WHERE id = %s AND workspace_id = %s",
            (version, template_id, workspace_id))
    invalidate_template_users(conn, workspace_id, template_id)
    return {**verdict, "previous": template["published_version"], "overridden": not verdict["passed"]}


def audit_details(verdict: dict[str, Any], reason: str | None) -> dict[str, Any]:
    """What the audit log keeps of a publish: the version, the one before, whether the gate was overridden
    (and why), the failing metrics and the runs compared."""
    return {"version": verdict["version"], "previous": verdict["previous"], "override": verdict["overridden"],
            "reason": reason, "failing": verdict["failing"], "candidate_run_id": verdict["candidate_run_id"],
            "baseline_run_id": verdict["baseline_run_id"]}
