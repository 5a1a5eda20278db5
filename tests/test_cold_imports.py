"""Cold start: every api/ file imports in a fresh interpreter without the heavy SDKs and with no third-party
package beyond a bare FastAPI app's but the few every function needs (module sets, not times: the times are
bench/cold_start.py's), and exposes what Vercel and AWS Lambda look for (`app` as ASGI, `lambda_handler`),
never a module-level `handler`."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Vercel turns every api/*.py into a function except names starting with "_" or "." (PROTOCOLS.md §3).
API_FILES = sorted(p.stem for p in (ROOT / "api").glob("*.py") if not p.name.startswith(("_", ".")))
HEAVY = ("openai", "anthropic", "pinecone", "firecrawl", "boto3", "botocore", "tiktoken")
# Third-party packages an api/ file may import beyond what a bare one-route FastAPI app loads: the database
# driver, the settings loader and the Lambda adapter. Anything else (an HTTP client, a Redis client, a JWT
# or crypto library, an SDK) loads inside the function that uses it; a new entry here needs its reason.
# (psycopg_pool, for one, adds ~10% of a bare app's import: it loads where the first pool is made.)
NEEDED = {"psycopg", "psycopg_binary", "pydantic_settings", "dotenv", "mangum"}
NEEDED_BY = {"sources": {"re2"}}  # URL scope patterns are compiled when a source is validated

# Runs in a fresh interpreter; the ASGI test mirrors vercel_runtime.resolver.detect_app_type.
PROBE = """
import inspect, json, sys
sys.path.insert(0, sys.argv[1])
import importlib
from fastapi import FastAPI
def root() -> dict:
    return {"ok": True}
FastAPI().get("/")(root)  # what a bare one-route app loads (bench/cold_start.py's baseline)
bare = set(sys.modules)
module = importlib.import_module("api." + sys.argv[2])
ours = ("api", "shared", "functions")
beyond = {m.split(".")[0] for m in sys.modules} - {m.split(".")[0] for m in bare}
third_party = sorted(t for t in beyond if t not in ours and t not in sys.stdlib_module_names and not t.startswith("_")
                     and t != "cython_runtime")
app = getattr(module, "app", None)
call = getattr(app, "__call__", None)
try:
    params = [p for p in inspect.signature(app).parameters.values() if p.default is p.empty]
except (TypeError, ValueError):
    params = []
print(json.dumps({
    "heavy": sorted(m for m in sys.argv[3].split(",") if m in sys.modules),
    "third_party": third_party,
    "has_app": app is not None,
    "asgi": bool(call) and inspect.iscoroutinefunction(call) and len(params) == 3,
    "has_handler": hasattr(module, "handler"),
    "lambda_handler": type(getattr(module, "lambda_handler", None)).__name__,
}))
"""


def import_fresh(name: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), name, ",".join(HEAVY)],
                          check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, f"importing api/{name}.py failed:\n{done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def imported() -> dict[str, dict[str, Any]]:
    """Each api/ file imported once in its own fresh interpreter (a few at a time: they are independent)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(API_FILES, pool.map(import_fresh, API_FILES), strict=True))


def test_there_are_functions_to_check() -> None:
    assert "health" in API_FILES and "keys" in API_FILES


@pytest.mark.parametrize("name", API_FILES)
def test_import_pulls_in_no_heavy_sdk(name: str, imported: dict[str, dict[str, Any]]) -> None:
    heavy = imported[name]["heavy"]
    assert not heavy, f"api/{name}.py loads {heavy} at import; import SDKs inside the function that uses them"


@pytest.mark.parametrize("name", API_FILES)
def test_import_adds_only_the_packages_every_function_needs(name: str, imported: dict[str, dict[str, Any]]) -> None:
    extra = set(imported[name]["third_party"]) - NEEDED - NEEDED_BY.get(name, set())
    assert not extra, (f"api/{name}.py loads {sorted(extra)} at import, beyond a bare FastAPI app's packages and "
                       f"{sorted(NEEDED)}: import it inside the function that uses it")


@pytest.mark.parametrize("name", API_FILES)
def test_exposes_asgi_app_and_lambda_handler_but_no_handler(name: str, imported: dict[str, dict[str, Any]]) -> None:
    result = imported[name]
    assert result["has_app"] and result["asgi"], f"api/{name}.py needs `app`, an ASGI app (Vercel serves it)"
    assert result["lambda_handler"] == "Mangum", f"api/{name}.py needs `lambda_handler = Mangum(app)`"
    assert not result["has_handler"], (
        f"api/{name}.py defines a module-level `handler`: Vercel's loader takes it for a "
        "BaseHTTPRequestHandler class; name the AWS Lambda entry `lambda_handler`")


def test_vercel_json_function_settings_apply() -> None:
    """Vercel applies only the first `functions` entry matching a file, so a glob listed before a specific entry
    silently drops that entry's settings and the build fails; every entry must name a real file."""
    from scripts._vercel_tools import BuildError, check_config

    try:
        config, _ = check_config(allow_missing=False)
    except BuildError as exc:
        pytest.fail(str(exc))
    for key, settings in config["functions"].items():
        excluded = settings.get("excludeFiles", "")
        assert all(part in excluded for part in ("tests", "bench", "scripts", ".data", ".venv")), key
