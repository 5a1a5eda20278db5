"""`python -m scripts deps audit` runs the real pip-audit against a vulnerability service (here an OSV-compatible
stand-in on loopback), fails on a known vulnerability, accepts one only with a reason in the ignore list, and
where the service has no answer reads PyPI's project record (exact only for the latest release): what nothing
could check is listed as NOT AUDITED, never passed as clean. Also: .ci/run runs the audit, and Dependabot
covers every ecosystem the repository has."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scripts._serve import serve_in_thread
from tests.conftest import ROOT

ADVISORY = {"id": "GHSA-demo-0001-aaaa", "aliases": ["CVE-2026-0001"], "summary": "demo flaw",
            "affected": [{"package": {"name": "demo-vulnerable", "ecosystem": "PyPI"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1"}]}]}]}
# PyPI project records: {name: (latest release, vulnerabilities of that release)}
RECORDS = {"demo-vulnerable": ("1.0", [{"id": "PYSEC-2026-9", "aliases": ["CVE-2026-0009"], "fixed_in": ["1.1"]}]),
           "demo-clean": ("2.0", []),
           "demo-behind": ("3.5", [])}


@pytest.fixture
def services() -> Iterator[dict]:
    """An OSV API stand-in (`down` makes it answer 503, as an unreachable mirror does) and PyPI's JSON API."""
    state: dict = {"down": False, "queries": []}

    async def osv_query(request: Request) -> JSONResponse:
        query = await request.json()
        state["queries"].append(query)
        if state["down"]:
            return JSONResponse({"error": "unavailable"}, status_code=503)
        affected = query["package"]["name"] == "demo-vulnerable" and query["version"] == "1.0"
        return JSONResponse({"vulns": [ADVISORY]} if affected else {})

    async def project(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name not in RECORDS:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        latest, vulns = RECORDS[name]
        return JSONResponse({"info": {"name": name, "version": latest}, "vulnerabilities": vulns})

    osv_url, stop_osv = serve_in_thread(Starlette(routes=[Route("/v1/query", osv_query, methods=["POST"])]))
    pypi_url, stop_pypi = serve_in_thread(Starlette(routes=[Route("/pypi/{name}/json", project)]))
    state.update(osv=f"{osv_url}/v1/query", pypi=f"{pypi_url}/pypi")
    try:
        yield state
    finally:
        stop_osv()
        stop_pypi()


def audit(tmp_path: Path, services: dict, pins: list[str], ignores: str = "", *extra: str) -> tuple[int, str]:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("".join(f"{pin}\n" for pin in pins))
    ignore_file = tmp_path / "ignore.txt"
    ignore_file.write_text(ignores)
    run = subprocess.run([sys.executable, "-m", "scripts", "deps", "audit", "-r", str(requirements), "--pins-only",
                          "--service", "osv", "--osv-url", services["osv"], "--pypi-url", services["pypi"],
                          "--ignore-file", str(ignore_file), "--timeout", "5", *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    return run.returncode, run.stdout + run.stderr


def test_a_known_vulnerability_fails_the_audit_naming_the_fix(tmp_path, services) -> None:
    code, output = audit(tmp_path, services, ["demo-vulnerable==1.0", "demo-clean==2.0"])
    assert code == 1, output
    line = next(line for line in output.splitlines() if "VULNERABLE" in line)
    assert "demo-vulnerable 1.0:" in line and "GHSA-demo-0001-aaaa" in line and "CVE-2026-0001" in line
    assert line.endswith("fixed in: 1.1") and "demo-clean" not in output.split("VULNERABLE", 1)[1]
    assert "known vulnerabilities: 1 (0 ignored" in output and "audited 2 of 2" in output
    assert {q["package"]["name"] for q in services["queries"]} == {"demo-vulnerable", "demo-clean"}  # pip-audit asked

    code, output = audit(tmp_path, services, ["demo-vulnerable==1.1", "demo-clean==2.0"])  # the fixed release
    assert code == 0 and "known vulnerabilities: 0" in output, output


def test_an_ignored_vulnerability_needs_a_reason(tmp_path, services) -> None:
    reason = "demo flaw is in the CLI entry point, which we never run; until 2027-01"
    code, output = audit(tmp_path, services, ["demo-vulnerable==1.0"], f"# accepted\nCVE-2026-0001  {reason}\n")
    assert code == 0, output
    assert "ignored  demo-vulnerable 1.0: " in output and f"(fix: 1.1) - {reason}" in output
    assert "known vulnerabilities: 0 (1 ignored" in output

    code, output = audit(tmp_path, services, ["demo-vulnerable==1.0"], "GHSA-demo-0001-aaaa\n")
    assert code == 1 and "ignore.txt:1: 'GHSA-demo-0001-aaaa' needs a reason" in output, output


def test_without_the_service_the_project_record_is_read_and_the_rest_is_not_audited(tmp_path, services) -> None:
    services["down"] = True
    pins = ["demo-vulnerable==1.0", "demo-clean==2.0", "demo-behind==3.1", "demo-unknown==0.1"]
    code, output = audit(tmp_path, services, pins)
    assert code == 1, output  # demo-vulnerable 1.0 is the latest release and its record lists a vulnerability
    assert "could not answer" in output
    assert "VULNERABLE  demo-vulnerable 1.0: PYSEC-2026-9 (CVE-2026-0009), fixed in: 1.1" in output
    assert "NOT AUDITED  demo-behind 3.1: pinned 3.1, latest 3.5" in output
    assert "NOT AUDITED  demo-unknown 0.1: no project record (HTTP 404)" in output
    assert "audited 2 of 4, not audited 2" in output

    code, output = audit(tmp_path, services, ["demo-clean==2.0", "demo-behind==3.1"])
    assert code == 0 and "not audited 1" in output, output  # listed, not passed off as clean ...
    code, output = audit(tmp_path, services, ["demo-clean==2.0", "demo-behind==3.1"], "", "--strict")
    assert code == 1, output  # ... and an error with --strict


def test_the_repository_ignore_list_gives_a_reason_for_every_id() -> None:
    from scripts.cmd_deps import IGNORE_FILE, load_ignores

    assert IGNORE_FILE.exists()
    load_ignores(IGNORE_FILE)  # raises on an entry without a reason


def test_ci_runs_the_audit_and_dependabot_covers_every_ecosystem_here() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts deps audit" in ci or "make audit" in ci
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    ecosystems = {u["package-ecosystem"]: u for u in config["updates"]}
    assert {"pip", "github-actions"} <= set(ecosystems)
    assert ("npm" in ecosystems) == (ROOT / "package.json").exists()  # npm only with a package.json to update
    assert ("docker" in ecosystems) == (ROOT / "Dockerfile").exists()
    assert list(ROOT.glob("requirements*.txt")) and list((ROOT / ".github" / "workflows").glob("*.yml"))
    for update in config["updates"]:
        assert update["directory"] == "/" and update["schedule"]["interval"] in {"daily", "weekly", "monthly"}
