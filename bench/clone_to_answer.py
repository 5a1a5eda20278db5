"""From `git clone` to the first cited answer, as a newcomer does it: clone, `make dev`, one chat turn.

    python bench/clone_to_answer.py [--branch main] [--repo /work/main]

A fresh clone in a temporary folder, empty pip and uv caches (PIP_CACHE_DIR, UV_CACHE_DIR), no `.venv`:
`make dev` creates the virtualenv and installs what it installs, then serves. The script waits for /api/health,
creates an assistant with a pasted text source through the API, waits for it to be ready and asks a question
with `stream: false`; the clock stops when the answer carries a citation. Prints one line per phase and the
total; nothing is asserted (the machine is shared: compare runs made together). Ctrl-C on `make dev` and the
folder removed at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import free_port, temporary_folder  # noqa: E402

TEXT = ("Opening hours. The shop at Harbour Street 4 is open Monday to Friday from nine to six and on "
        "Saturdays from ten to two. Refunds are paid back within 14 days of the return.")
QUESTION = "When are refunds paid back?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(ROOT), help="repository to clone (a path or URL)")
    parser.add_argument("--branch", default=None, help="branch to clone (default: the repository's HEAD)")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its .venv, .data) afterwards")
    args = parser.parse_args()

    with temporary_folder("clone-to-answer-", keep=args.keep) as work:
        clone, cache = work / "clone", work / "pip-cache"
        cache.mkdir()
        port = free_port()
        env = {**os.environ, "PIP_CACHE_DIR": str(cache), "UV_CACHE_DIR": str(cache / "uv"), "PORT": str(port)}
        for name in ("VIRTUAL_ENV", "DATABASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            env.pop(name, None)  # the newcomer's shell: no venv active, no stack, no model key
        marks: list[tuple[str, float]] = []
        started = time.monotonic()
        dev: subprocess.Popen[str] | None = None
        log = work / "make-dev.log"
        try:
            branch = ["--branch", args.branch] if args.branch else []
            subprocess.run(["git", "clone", "-q", *branch, args.repo, str(clone)], check=True)
            marks.append(("clone", time.monotonic()))
            with log.open("w") as out:
                dev = subprocess.Popen(["make", "dev"], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       text=True, start_new_session=True)
            base = f"http://127.0.0.1:{port}"
            deadline = started + args.timeout
            installed = False
            while True:
                if not installed and any((clone / ".venv" / s).exists() for s in (".installed-local", ".installed")):
                    installed = True
                    marks.append(("make dev: installed", time.monotonic()))
                try:
                    alive = httpx.get(f"{base}/api/health", timeout=2).status_code == 200
                    if alive and (clone / ".data/admin-key").exists():
                        break
                except httpx.TransportError:
                    pass
                if dev.poll() is not None:
                    raise SystemExit(f"make dev exited {dev.returncode}:\n{log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"make dev did not serve within {args.timeout:.0f} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            marks.append(("make dev: serving", time.monotonic()))
            key = (clone / ".data/admin-key").read_text().strip()
            api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)
            assistant = api.post("/api/assistants", json={"name": "Shop"}).raise_for_status().json()["id"]
            source = api.post("/api/sources", json={"assistant_id": assistant, "kind": "text", "title": "Shop facts",
                                                    "content": TEXT}).raise_for_status().json()
            while (status := api.get(f"/api/sources/{source['id']}").raise_for_status().json()["status"]) != "ready":
                if status == "failed" or time.monotonic() > deadline:
                    raise SystemExit(f"the source did not become ready: {status}")
                time.sleep(0.2)
            marks.append(("source ready", time.monotonic()))
            answer = api.post("/api/chat", json={"assistant_id": assistant, "message": QUESTION, "stream": False})
            body = answer.raise_for_status().json()
            if not body.get("sources"):
                raise SystemExit(f"the answer has no citation: {body}")
            marks.append(("first cited answer", time.monotonic()))
        finally:
            if dev is not None and dev.poll() is None:
                os.killpg(dev.pid, signal.SIGINT)  # make dev's own Ctrl-C path: stops PostgreSQL and Redis
                try:
                    dev.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(dev.pid, signal.SIGKILL)
    previous = started
    for name, at in marks:
        print(f"{name:22s} +{at - previous:6.1f} s  (at {at - started:6.1f} s)")
        previous = at
    print(f"clone to first cited answer: {marks[-1][1] - started:.1f} s (pip cache empty, {args.branch or 'HEAD'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
