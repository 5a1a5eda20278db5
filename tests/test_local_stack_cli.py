"""Next to a running `make dev`, the CLI needs no environment: it finds the stack in the data folder. Stopping
`make dev` (Ctrl-C, or a plain `kill`) stops every process it started: PostgreSQL and both redis-servers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT
from tests.test_dev_env import free_port  # below the ephemeral range the stack's stand-ins use

BARE = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "ENVIRONMENT": "development"}


def started_by(data: Path) -> list[psutil.Process]:
    """PostgreSQL (`postgres -D <data>/pg`) and the redis-servers (working directory <data>) of this stack."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        with contextlib.suppress(psutil.Error):
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            cwd = process.info["cwd"] or ""
            if str(data) in " ".join(process.info["cmdline"] or []) or cwd == str(data) or \
                    cwd.startswith(f"{data}/"):
                found.append(process)
    return found


class Dev:
    def __init__(self) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="dialog-engine-dev-cli-"))
        self.data.chmod(0o755)  # pgserver runs PostgreSQL as its own user when we are root
        self.url = f"http://127.0.0.1:{free_port()}"
        # An embeddings API "configured" (unreachable): the local model is not loaded, search is keyword-only.
        env = {**BARE, "EMBEDDING_BASE_URL": "http://127.0.0.1:9/v1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scripts", "dev", "--port", self.url.rsplit(":", 1)[1], "--data", str(self.data)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code in (200, 503):
                    return
            assert self.process.poll() is None, self.process.communicate()[0]
            time.sleep(0.2)
        pytest.fail("make dev did not answer in 120 s")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The CLI as a newcomer runs it in a second terminal: nothing set but where `make dev` keeps its data."""
        return subprocess.run([sys.executable, "-m", "scripts", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=120, check=False, env={**BARE, "DIALOG_DEV_DATA": str(self.data)})

    def stop(self, sig: int) -> str:
        self.process.send_signal(sig)
        try:
            return self.process.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.communicate()[0]

    def clean_up(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for process in started_by(self.data):  # whatever a failed test left: ours, found by our folder
            with contextlib.suppress(psutil.Error):
                process.kill()
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def dev() -> Iterator[Dev]:
    running = Dev()
    try:
        yield running
    finally:
        running.clean_up()


def test_the_cli_finds_the_running_stack_with_no_environment(dev: Dev) -> None:
    health = dev.cli("health", "db")
    assert health.returncode == 0, health.stdout + health.stderr
    assert "using the local stack of `make dev`" in health.stderr
    created = dev.cli("workspace", "create", "Newcomer")
    assert created.returncode == 0, created.stdout + created.stderr
    key = created.stdout.strip().splitlines()[-1].split()[-1]
    assert httpx.get(f"{dev.url}/api/keys", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    for command in (["metrics", "show", "--since", "1h"], ["db", "slow-queries"], ["redis", "test"],
                    ["db", "migrate"]):
        run = dev.cli(*command)
        assert run.returncode == 0, (command, run.stdout + run.stderr)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_stopping_make_dev_stops_everything_it_started(dev: Dev, sig: int) -> None:
    children = started_by(dev.data)
    names = " ".join(" ".join(p.cmdline()) for p in children)
    assert "postgres" in names and names.count("redis-server") == 2, names
    output = dev.stop(sig)
    assert "stopping the local stack" in output, output
    psutil.wait_procs(children, timeout=10)
    assert [p.pid for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == [], output
    assert not (dev.data / "stack.json").exists()
    # With nothing running, the CLI says what is missing and how to get it.
    alone = dev.cli("health", "all")
    assert alone.returncode == 1 and "DATABASE_URL is not set" in alone.stdout
    assert "make dev" in alone.stdout


def test_a_test_run_stopped_by_sigterm_leaves_no_server_behind(tmp_path: Path) -> None:
    """`make test` cancelled (CI, `timeout`): the session's PostgreSQL and redis-servers stop with it."""
    where = tmp_path / "stack-folder"
    (tmp_path / "test_waits.py").write_text(
        "import time\nfrom pathlib import Path\n\n"
        "def test_waits(stack):\n"
        f"    Path({str(where)!r}).write_text(str(stack.local.data_dir))\n"
        "    time.sleep(120)\n")
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                            "--rootdir", str(tmp_path), str(tmp_path / "test_waits.py")],
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    while not where.exists() and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.2)
    assert where.exists(), run.communicate()[0] if run.poll() is not None else "the stack did not start"
    folder = Path(where.read_text())
    children = started_by(folder)
    try:
        assert len(children) >= 3, [p.cmdline() for p in children]  # postgres (+ its workers), 2 redis-servers
        run.send_signal(signal.SIGTERM)
        output = run.communicate(timeout=60)[0]
        psutil.wait_procs(children, timeout=10)
        left = [p.cmdline()[0] for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert left == [], output
    finally:
        if run.poll() is None:
            run.kill()
        for process in started_by(folder):
            with contextlib.suppress(psutil.Error):
                process.kill()


def test_a_test_run_leaves_no_redis_server_behind(tmp_path: Path) -> None:
    """The stand-in tests' own Redis (served to the Upstash and QStash stand-ins) stops with their module."""
    base = tmp_path / "basetemp"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={base}",
                          "tests/test_stand_ins.py", "-k", "redis_commands or redis_errors"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    left = started_by(base)
    for process in left:  # ours (working directory in our basetemp): never leave them to the next run
        with contextlib.suppress(psutil.Error):
            process.kill()
    assert [p.pid for p in left] == []
