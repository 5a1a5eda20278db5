"""`eval run --assistant A [--set S] [--version N] [--fail-under hit@5=0.9]`: run an evaluation set through a
deployment's API, wait for it, print the metrics table and exit 1 when a threshold is missed (for CI).

It talks HTTP to the engine (--url / DIALOG_ENGINE_URL, --key / DIALOG_ENGINE_API_KEY: an admin key), so a
customer's CI gates prompt changes against their own deployment without database access.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from shared.evals.scoring import QUALITY

TABLE = (*QUALITY, "ttft_p50_ms", "ttft_p95_ms", "tokens_in", "tokens_out", "cost_usd", "passed", "cases",
         "cases_failed")
POLL_S = 2.0


class EvalCommandError(Exception):
    """A mistake in the command or an answer from the engine that ends it (printed as one line, exit 1)."""


def register(groups: argparse._SubParsersAction) -> None:
    evals = groups.add_parser("eval", help="evaluation runs (for CI)").add_subparsers(dest="command", required=True)
    run = evals.add_parser("run", help="run an evaluation set, print the metrics, fail below thresholds")
    run.add_argument("--assistant", required=True, help="the assistant id")
    run.add_argument("--set", dest="set_id", help="the evaluation set (default: the assistant's only set)")
    run.add_argument("--version", type=int, help="template version to run (default: the one its chats use now)")
    run.add_argument("--fail-under", action="append", default=[], metavar="METRIC=VALUE",
                     help="exit 1 when METRIC is below VALUE, e.g. hit@5=0.9 (repeatable)")
    run.add_argument("--fail-over", action="append", default=[], metavar="METRIC=VALUE",
                     help="exit 1 when METRIC is above VALUE, e.g. ttft_p95_ms=2500 (repeatable)")
    run.add_argument("--url", default=os.environ.get("DIALOG_ENGINE_URL"),
                     help="the engine's base URL (default: DIALOG_ENGINE_URL, else PUBLIC_URL)")
    run.add_argument("--key", default=os.environ.get("DIALOG_ENGINE_API_KEY"),
                     help="an admin API key (default: DIALOG_ENGINE_API_KEY)")
    run.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the run (default 1800)")
    run.set_defaults(func=cmd_run)


def thresholds(given: list[str], option: str) -> dict[str, float]:
    parsed = {}
    for item in given:
        name, _, value = item.partition("=")
        try:
            parsed[name.strip()] = float(value)
        except ValueError:
            raise EvalCommandError(f"{option} {item!r}: expected METRIC=NUMBER, e.g. hit@5=0.9") from None
        if name.strip() not in TABLE:
            raise EvalCommandError(f"{option} {item!r}: unknown metric (known: {', '.join(TABLE)})")
    return parsed


def cmd_run(args: argparse.Namespace) -> int:
    import httpx

    under, over = thresholds(args.fail_under, "--fail-under"), thresholds(args.fail_over, "--fail-over")
    url = args.url or os.environ.get("PUBLIC_URL")
    if not url or not args.key:
        print("error: give --url and --key (or DIALOG_ENGINE_URL and DIALOG_ENGINE_API_KEY)", file=sys.stderr)
        return 2
    with httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {args.key}"}, timeout=30) as api:
        set_id = args.set_id or _only_set(api, args.assistant)
        body: dict[str, Any] = {"set_id": set_id, "trigger": "cli"}
        if args.version is not None:
            body["template_version"] = args.version
        run = _json(api.post("/api/evals/runs", json=body))
        print(f"run {run['id']}: assistant {run['assistant_id']}, template {run['template_id']} "
              f"v{run['template_version']}, {run['cases_total']} cases", flush=True)
        deadline = time.monotonic() + args.timeout
        while run["status"] in ("queued", "running"):
            if time.monotonic() > deadline:
                print(f"error: the run did not finish within {args.timeout:.0f} s "
                      f"({run['cases_done']}/{run['cases_total']} cases)", file=sys.stderr)
                return 1
            time.sleep(POLL_S)
            run = _json(api.get(f"/api/evals/runs/{run['id']}"))
    if run["status"] != "succeeded":
        print(f"error: the run {run['status']}: {run.get('error') or 'see the engine logs'}", file=sys.stderr)
        return 1
    missed = print_table(run["metrics"], under, over)
    if missed:
        print(f"FAILED: {', '.join(missed)}")
        return 1
    return 0


def print_table(metrics: dict[str, Any], under: dict[str, float], over: dict[str, float]) -> list[str]:
    """The metrics as a Markdown table with each threshold's verdict; returns the missed ones."""
    missed = []
    print(f"\nanswer support by {metrics.get('answer_support_method')}\n")
    print("| metric | value | threshold | |")
    print("| --- | ---: | --- | --- |")
    for name in TABLE:
        value = metrics.get(name)
        rule, verdict = "", ""
        if name in under or name in over:
            limit = under.get(name, over.get(name))
            rule = f">= {limit:g}" if name in under else f"<= {limit:g}"
            good = value is not None and (value >= limit if name in under else value <= limit)
            verdict = "ok" if good else "FAIL"
            if not good:
                missed.append(f"{name} {_show(value)} (needs {rule})")
        print(f"| {name} | {_show(value)} | {rule} | {verdict} |")
    return missed


def _show(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _only_set(api: Any, assistant_id: str) -> str:
    sets = _json(api.get("/api/evals/sets", params={"assistant_id": assistant_id}))["data"]
    if len(sets) != 1:
        names = ", ".join(f"{s['id']} ({s['name']})" for s in sets) or "none"
        raise EvalCommandError(f"assistant {assistant_id} has {len(sets)} evaluation sets ({names}); name one "
                         "with --set")
    return str(sets[0]["id"])


def _json(reply: Any) -> Any:
    if reply.status_code >= 400:
        try:
            error = reply.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = reply.text[:300]
        raise EvalCommandError(f"{reply.request.method} {reply.request.url.path} answered {reply.status_code}: "
                         f"{message}")
    return reply.json()

