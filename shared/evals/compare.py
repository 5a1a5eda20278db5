"""Two runs side by side: per-metric deltas and the cases whose outcome changed, newly failing first."""

from __future__ import annotations

from typing import Any

import psycopg

from shared.core.db import Row, fetch_all
from shared.evals.runner import get_run
from shared.evals.scoring import LOWER_IS_BETTER, QUALITY, case_passed

ORDER = {"newly_failing": 0, "newly_passing": 1, "changed": 2, "only_in_a": 3, "only_in_b": 4}


def compare(conn: psycopg.Connection[Row], workspace_id: str, run_a: str, run_b: str) -> dict[str, Any]:
    a, b = get_run(conn, workspace_id, run_a), get_run(conn, workspace_id, run_b)
    deltas = {}
    for metric in (*QUALITY, *LOWER_IS_BETTER, "tokens_in", "tokens_out", "passed"):
        va, vb = (a["metrics"] or {}).get(metric), (b["metrics"] or {}).get(metric)
        delta = round(vb - va, 6) if isinstance(va, int | float) and isinstance(vb, int | float) else None
        better = None if delta is None or delta == 0 else (delta < 0) == (metric in LOWER_IS_BETTER)
        deltas[metric] = {"a": va, "b": vb, "delta": delta, "better": better}
    return {"a": _summary(a), "b": _summary(b), "metrics": deltas,
            "cases": changed_cases(_results(conn, workspace_id, run_a), _results(conn, workspace_id, run_b))}


def _summary(run: Row) -> dict[str, Any]:
    return {"id": run["id"], "set_id": run["set_id"], "assistant_id": run["assistant_id"],
            "template_id": run["template_id"], "template_version": run["template_version"], "status": run["status"]}


def _results(conn: psycopg.Connection[Row], workspace_id: str, run_id: str) -> dict[str, Row]:
    rows = fetch_all(conn, """SELECT case_id, ordinal, expected, status, answer, abstained, scores FROM eval_results
                              WHERE run_id = %s AND workspace_id = %s ORDER BY ordinal""", (run_id, workspace_id))
    return {r["case_id"]: r for r in rows}


def _verdict(row: Row | None) -> dict[str, Any] | None:
    if row is None or row["status"] != "done":
        return None if row is None else {"passed": False, "rank": None, "abstained": None, "status": row["status"]}
    scores = row["scores"] or {}
    return {"passed": case_passed(row["expected"], scores, bool(row["abstained"])), "rank": scores.get("rank"),
            "abstained": row["abstained"], "status": row["status"]}


def changed_cases(a: dict[str, Row], b: dict[str, Row]) -> list[dict[str, Any]]:
    changes = []
    for case_id in dict.fromkeys([*a, *b]):
        va, vb = _verdict(a.get(case_id)), _verdict(b.get(case_id))
        if va is None or vb is None:
            change = "only_in_a" if vb is None else "only_in_b"
        elif va["passed"] and not vb["passed"]:
            change = "newly_failing"
        elif vb["passed"] and not va["passed"]:
            change = "newly_passing"
        elif (va["rank"], va["abstained"]) != (vb["rank"], vb["abstained"]):
            change = "changed"
        else:
            continue
        row = a.get(case_id) or b.get(case_id)
        assert row is not None
        changes.append({"case_id": case_id, "question": row["expected"]["question"], "change": change, "a": va,
                        "b": vb, "answer_a": (a.get(case_id) or {}).get("answer"),
                        "answer_b": (b.get(case_id) or {}).get("answer")})
    return sorted(changes, key=lambda c: ORDER[c["change"]])
