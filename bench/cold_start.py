"""Cold start: each api/ file's import beside a bare one-route FastAPI app, and a fresh instance's first chat turn.

    python bench/cold_start.py [--runs 9] [--explain] [--strict] [--rounds 5] [--skip-imports] [--skip-requests]
                               [--baseline PATH]

Imports: rounds interleave every module in a shuffled order, so a busy machine slows all of them alike.
Each import is timed twice in its fresh interpreter: wall clock, and CPU time (process_time), which other
processes sharing the cores don't inflate; the verdict uses CPU time, the better stand-in for a dedicated
Vercel instance. Target (issue 12): at most 1.3x the bare app for every function. A "bare + psycopg" row
shows what psycopg alone would add. --explain lists, per function over target (or all), the packages it
imports beyond the bare app, who imports them and their cumulative cost.

Requests: a local stack (PostgreSQL + pgvector, Redis, the Upstash and QStash stand-ins) and OpenAI and
Anthropic stand-ins that answer at once; api/chat.py (the Vercel function itself, not the dev router) is
served by uvicorn in a fresh interpreter, once per round and scenario, beside the bare app. Per round:
the time until the server accepts connections (its imports), the first request, then warm requests
(their median); a new client connection each time. Chat turns are timed to the SSE `done` event, with
the first `delta` as the time a user waits; each client is made before the clock starts (a new connection
each time, but not the client's own TLS context, ~30 ms that inflated every figure before). Beside the
times, the server's CPU (time.process_time in the served process: all its threads, ended ones included,
reported on SIGUSR1) for the first request and a warm one: what an
instance with one vCPU pays, where this machine's second core hides work done in a background thread
(still running at the first request, it counts there). Scenarios:
  chat            the default template (hybrid retrieval: the query embedding, OpenAI's stream)
  failover        OpenAI answers 503 to every chat request: each turn fails over to Anthropic
  later failover  the first turn is answered by OpenAI; --gap seconds later OpenAI fails and the next turn
                  is the instance's first failover (when the providers used SDKs, importing
                  Anthropic's only then cost seconds); its CPU column covers both turns
Target (issue 12): a fresh instance's first chat turn <= 2x a warm one. --runtime-only keeps the served
processes to what a deployment installs (requirements.txt and its dependencies, plus uvicorn): this venv
also holds the development tools, some of which httpx and httpcore import when present. --baseline PATH serves another
checkout's api/chat.py (a worktree of main, say) in the same rounds, interleaved with this one's, against
the same stack and stand-ins: before and after a change, measured in one time window.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import create_database, local_stack, serve_app, stop_process  # noqa: E402

IMPORT_TARGET = 1.3
FIRST_REQUEST_TARGET = 2.0
BARE_APP = '''from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root() -> dict:
    return {"ok": True}
'''
TIMER = "import sys, time; sys.path.insert(0, sys.argv[1]); t, c = time.perf_counter(), time.process_time(); " \
        "import {module}; print((time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000)"


def child_env() -> dict[str, str]:
    """The environment of every measured interpreter: bytecode is written and reused (Vercel's build compiles
    it; with PYTHONDONTWRITEBYTECODE set, as here, each import would compile our sources again)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def api_modules() -> list[str]:
    return sorted(f"api.{p.stem}" for p in (ROOT / "api").glob("*.py") if not p.name.startswith(("_", ".")))


def import_ms(module: str, path: Path) -> tuple[float, float]:
    """(wall ms, CPU ms) of importing `module` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", TIMER.format(module=module), str(path)],
                          check=False, capture_output=True, text=True, cwd=path, env=child_env())
    if done.returncode != 0:
        raise SystemExit(f"importing {module} failed:\n{done.stderr[-1500:]}")
    wall, cpu = done.stdout.split()[-2:]
    return float(wall), float(cpu)


def import_tree(module: str, path: Path) -> list[tuple[str, int, int, str]]:
    """(module, self us, cumulative us, the module that imported it) from one `python -X importtime` run."""
    code = f"import sys; sys.path.insert(0, {str(path)!r}); import {module}"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], check=False, capture_output=True,
                          text=True, cwd=path, env=child_env())
    rows, pending = [], []  # importtime prints children before their parent, one indent level deeper
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, raw = line[len("import time:"):].split("|")
        name, level = raw.strip(), (len(raw) - len(raw.lstrip()) - 1) // 2
        for child in [c for c in pending if c[0] == level + 1]:
            rows.append((child[1], child[2], child[3], name))
            pending.remove(child)
        pending.append((level, name, int(self_us), int(cumulative)))
    rows += [(name, self_us, cumulative, "") for _, name, self_us, cumulative in pending]
    return rows


def explain(module: str, bare: set[str]) -> None:
    """What this module imports beyond the bare app: third-party packages by who imports them, and our own code."""
    ours = ("api", "shared", "functions")
    rows = [r for r in import_tree(module, ROOT) if r[0] not in bare]
    entry = [r for r in rows if r[0].split(".")[0] not in ours and (r[3] == "" or r[3].split(".")[0] in ours)]
    own = sum(r[1] for r in rows if r[0].split(".")[0] in ours)
    print(f"  {module}: imports beyond the bare app (cumulative ms, imported by), our own modules' self time "
          f"{own / 1000:.1f} ms")
    for name, _, cumulative, parent in sorted(entry, key=lambda r: -r[2])[:10]:
        print(f"    {cumulative / 1000:8.1f}  {name:<28} <- {parent or '(top)'}")


def imports(runs: int, show_explain: bool, bare_dir: Path) -> list[str]:
    """Print the import table; returns the functions over target."""
    modules = api_modules()
    (bare_dir / "bare_with_psycopg.py").write_text(BARE_APP + "\nimport psycopg  # noqa: E402,F401\n")
    targets = [("bare_fastapi_app", bare_dir), ("bare_with_psycopg", bare_dir)] + [(m, ROOT) for m in modules]
    for module, path in targets:  # warm-up: compile bytecode, fill the OS page cache
        import_ms(module, path)
    samples: dict[str, list[tuple[float, float]]] = {module: [] for module, _ in targets}
    for _ in range(runs):
        random.shuffle(targets)
        for module, path in targets:
            samples[module].append(import_ms(module, path))
    bare_profile = {r[0] for r in import_tree("bare_fastapi_app", bare_dir)} if show_explain else set()
    wall = {m: statistics.median(s[0] for s in v) for m, v in samples.items()}
    cpu = {m: statistics.median(s[1] for s in v) for m, v in samples.items()}
    bare_wall, bare_cpu = wall["bare_fastapi_app"], cpu["bare_fastapi_app"]
    print(f"python {sys.version.split()[0]}, {runs} fresh interpreters each, median import ms\n")
    print(f"{'module':<26}{'wall ms':>9}{'ratio':>7}{'cpu ms':>9}{'ratio':>7}")
    print(f"{'bare one-route FastAPI':<26}{bare_wall:>9.1f}{1:>7.2f}{bare_cpu:>9.1f}{1:>7.2f}")
    psycopg_cpu = cpu["bare_with_psycopg"]
    print(f"{'bare + import psycopg':<26}{wall['bare_with_psycopg']:>9.1f}{wall['bare_with_psycopg'] / bare_wall:>7.2f}"
          f"{psycopg_cpu:>9.1f}{psycopg_cpu / bare_cpu:>7.2f}  (psycopg alone: +{psycopg_cpu - bare_cpu:.0f} ms CPU)")
    over = []
    for module in modules:
        ratio = cpu[module] / bare_cpu
        if ratio > IMPORT_TARGET:
            over.append(module)
        print(f"{module:<26}{wall[module]:>9.1f}{wall[module] / bare_wall:>7.2f}{cpu[module]:>9.1f}"
              f"{ratio:>7.2f}{'  over target' if ratio > IMPORT_TARGET else ''}")
    print(f"\nimport target: every function <= {IMPORT_TARGET}x the bare app (CPU time); "
          + (f"over: {', '.join(over)}" if over else "all within target"))
    if show_explain:
        for module in over or modules:
            explain(module, bare_profile)
    return over


# -- first request on a fresh instance ------------------------------------------------------------------

@dataclass
class Timing:
    ready_ms: float        # spawn until the server accepts connections (interpreter start + imports)
    first: tuple[float, float]  # (first delta or response, whole response) ms of the instance's first request
    warm: tuple[float, float]   # the same, median over the warm requests
    cpu: tuple[float, float] = (0.0, 0.0)  # server CPU ms (all threads): the first request, a warm one (mean)


# Top-level modules the served process may not import (--runtime-only); empty: all that is installed.
BLOCKED: list[str] = []


def not_deployed(root: Path) -> list[str]:
    """Top-level modules of installed distributions that a deployment does not have: neither requirements.txt
    nor the dependencies of its packages (nor uvicorn's, which serves here) install them. This venv holds
    the development tools too, and some are imported when present: httpx loads its command line's rich,
    click and pygments, httpcore the HTTP/2 stack (h2), which a Vercel function never installs."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    wanted: list[tuple[str, set[str]]] = [("uvicorn", set())]
    for line in (root / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith(("#", "-")):
            requirement = Requirement(line.split("#")[0].strip())
            wanted.append((requirement.name, set(requirement.extras)))
    deployed: set[str] = set()
    while wanted:
        name, extras = wanted.pop()
        if canonicalize_name(name) in deployed:
            continue
        deployed.add(canonicalize_name(name))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in map(Requirement, requires):
            if spec.marker is None or any(spec.marker.evaluate({"extra": e}) for e in ("", *extras)):
                wanted.append((spec.name, set(spec.extras)))
    modules = metadata.packages_distributions()
    return sorted(m for m, dists in modules.items() if m.isidentifier() and m not in sys.stdlib_module_names
                  and not any(canonicalize_name(d) in deployed for d in dists))


def spawn(module: str, path: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """`module`'s `app` under uvicorn in a fresh interpreter; returns once it accepts connections (no request
    is sent before the measured one, so nothing is warmed up by the wait), with the ms that took."""
    began = time.perf_counter()
    url, process = serve_app(module, "app", env=child_env(), path=path, blocked=BLOCKED, poll_s=0.005)
    return process, url, (time.perf_counter() - began) * 1000


def get_root(url: str) -> tuple[float, float]:
    import httpx

    with httpx.Client(timeout=60) as client:  # made untimed: its TLS context alone costs ~30 ms
        began = time.perf_counter()
        client.get(f"{url}/").raise_for_status()
        ms = (time.perf_counter() - began) * 1000
    return ms, ms


def chat_turn(url: str, key: str, assistant_id: str, expect_provider: str) -> tuple[float, float]:
    """(ms to the first delta, ms to `done`) of one streamed turn in a new conversation."""
    import httpx

    first_delta = None
    done: dict[str, Any] = {}
    # A new client, so a new connection, made before the clock starts: its TLS context alone costs ~30 ms.
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:
        began = time.perf_counter()
        with client.stream("POST", f"{url}/api/chat",
                           json={"assistant_id": assistant_id, "message": "How do refunds work?"}) as r:
            r.raise_for_status()
            event = ""
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    if event == "delta" and first_delta is None:
                        first_delta = (time.perf_counter() - began) * 1000
                elif line.startswith("data: ") and event == "done":
                    done = json.loads(line[6:])
        total = (time.perf_counter() - began) * 1000
    if done.get("status") != "complete" or done.get("provider") != expect_provider:
        raise SystemExit(f"unexpected turn: {done}")
    return first_delta if first_delta is not None else total, total


def cpu_ms(process: subprocess.Popen[bytes], path: str) -> float:
    """The served process's CPU time so far (time.process_time: every thread, ended ones included), asked for
    with SIGUSR1 (the harness's SERVE writes it to `path`), not with a request, which would warm the server up.
    Summing /proc's per-thread counters lost the CPU of threads that ended meanwhile: the warm-up's."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            return float(Path(path).read_text()) * 1000
        time.sleep(0.001)
    raise SystemExit("the served process did not report its CPU time")


def measure(module: str, path: Path, first: Callable[[str], tuple[float, float]],
            warm: Callable[[str], tuple[float, float]], warm_requests: int) -> Timing:
    # Where the served process writes its CPU time on SIGUSR1 (bench._harness.SERVE reads it from its environment).
    report = os.environ.setdefault("BENCH_CPU_FILE", os.path.join(tempfile.gettempdir(), f"bench-cpu-{os.getpid()}"))
    process, url, ready_ms = spawn(module, path)
    try:
        before = cpu_ms(process, report)
        first_ms = first(url)
        after_first = cpu_ms(process, report)
        samples = [warm(url) for _ in range(warm_requests)]
        after_warm = cpu_ms(process, report)
    finally:
        stop_process(process)
    return Timing(ready_ms, first_ms, (statistics.median(s[0] for s in samples),
                                       statistics.median(s[1] for s in samples)),
                  (after_first - before, (after_warm - after_first) / warm_requests))


def requests(rounds: int, warm_requests: int, gap_s: float, bare_dir: Path, baseline: Path | None = None) -> bool:
    """Print the first-request table; True when the chat scenarios are within target."""
    from scripts._serve import serve_in_thread
    from tests.fakes.anthropic_server import FakeAnthropic
    from tests.fakes.openai_server import FakeOpenAI, FaultPlan

    with local_stack("bench-cold-") as stack:
        create_database(stack, "bench")
        openai, anthropic = FakeOpenAI(), FakeAnthropic()
        openai.reply = anthropic.reply = "Refunds take five days."
        openai_url, _ = serve_in_thread(openai.app)
        anthropic_url, _ = serve_in_thread(anthropic.app)
        os.environ.update({"OPENAI_API_KEY": openai.api_key, "OPENAI_BASE_URL": f"{openai_url}/v1",
                           "ANTHROPIC_API_KEY": anthropic.api_key, "ANTHROPIC_BASE_URL": anthropic_url,
                           "VECTOR_BACKEND": "pgvector", "ENVIRONMENT": "development",
                           # limits stay on (their Redis calls are part of a turn), just out of reach
                           "RATE_CHAT_PER_KEY_PER_MINUTE": "100000", "RATE_CHAT_PER_USER_PER_MINUTE": "100000"})
        from shared.core.db import connect
        from shared.core.settings import get_settings
        from shared.guard.auth import create_workspace

        get_settings.cache_clear()
        with connect() as conn:
            _, key = create_workspace(conn, "bench")
            workspace = conn.execute("SELECT id FROM workspaces").fetchone()["id"]
            assistant = conn.execute("INSERT INTO assistants (workspace_id, name, template_id) VALUES (%s, 'b', "
                                     "'default') RETURNING id", (workspace,)).fetchone()["id"]

        def turn(provider: str) -> Callable[[str], tuple[float, float]]:
            return lambda url: chat_turn(url, key, assistant, provider)

        def openai_ok() -> None:
            openai.faults = None

        def openai_down() -> None:
            openai.faults = FaultPlan(0, 1.0, ("5xx",))

        def first_failover(url: str) -> tuple[float, float]:
            """The instance's first turn (answered by OpenAI, untimed), a pause, then its first failover."""
            openai_ok()
            turn("openai")(url)
            time.sleep(gap_s)
            openai_down()
            return turn("anthropic")(url)

        def chat_scenarios(root: Path, label: str) -> list[tuple[str, Callable[[], Timing]]]:
            return [
                (f"chat{label}", lambda: (openai_ok(), measure("api.chat", root, turn("openai"), turn("openai"),
                                                               warm_requests))[1]),
                (f"chat, failover{label}", lambda: (openai_down(), measure("api.chat", root, turn("anthropic"),
                                                                           turn("anthropic"), warm_requests))[1]),
                (f"chat, later failover ({gap_s:g} s){label}", lambda: measure("api.chat", root, first_failover,
                                                                               turn("anthropic"), warm_requests)),
            ]

        scenarios: list[tuple[str, Callable[[], Timing]]] = [
            ("bare one-route FastAPI", lambda: measure("bare_fastapi_app", bare_dir, get_root, get_root,
                                                       warm_requests)),
            *chat_scenarios(ROOT, ""), *(chat_scenarios(baseline, " [baseline]") if baseline else []),
        ]
        results: dict[str, list[Timing]] = {name: [] for name, _ in scenarios}
        for _, run in scenarios:  # warm-up: bytecode written, the OS page cache filled
            run()
        for _ in range(rounds):
            random.shuffle(scenarios)
            for name, run in scenarios:
                results[name].append(run())
    return report_requests(results, rounds, warm_requests)


def report_requests(results: dict[str, list[Timing]], rounds: int, warm_requests: int) -> bool:
    print(f"\nfirst request on a fresh instance: {rounds} fresh uvicorn processes per scenario, medians; warm = "
          f"median of the {warm_requests} requests after the first; chat times: first delta / done\n")
    print(f"{'scenario':<44}{'ready ms':>9}{'first ms':>19}{'warm ms':>17}{'first/warm':>12}"
          f"{'CPU first / warm ms':>22}")
    within = True
    for name, timings in results.items():
        ready = statistics.median(t.ready_ms for t in timings)
        first = [statistics.median(t.first[i] for t in timings) for i in (0, 1)]
        warm = [statistics.median(t.warm[i] for t in timings) for i in (0, 1)]
        ratio = first[1] / warm[1]
        is_later = "later" in name
        if name.startswith("chat") and not is_later and "[baseline]" not in name and ratio > FIRST_REQUEST_TARGET:
            within = False
        label = " (1st failover)" if is_later else ""
        cpu = [statistics.median(t.cpu[i] for t in timings) for i in (0, 1)]
        print(f"{name:<44}{ready:>9.0f}{first[0]:>9.1f} /{first[1]:>8.1f}{warm[0]:>8.1f} /{warm[1]:>7.1f}"
              f"{ratio:>11.2f}x{cpu[0]:>12.1f} /{cpu[1]:>6.1f}{label}")
    print(f"\nfirst-request target: a fresh instance's first chat turn <= {FIRST_REQUEST_TARGET:g}x a warm one "
          f"(done); {'within target' if within else 'over target'}. 'later failover': its first column is "
          "the turn that fails over for the first time (not the instance's first turn).")
    return within


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters per module (at least 7)")
    parser.add_argument("--explain", action="store_true", help="show what costs time in functions over target")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a function or the first turn is over")
    parser.add_argument("--rounds", type=int, default=5, help="fresh server processes per request scenario")
    parser.add_argument("--warm", type=int, default=15, help="warm requests per fresh server")
    parser.add_argument("--gap", type=float, default=5.0, help="seconds between the first turn and the failover")
    parser.add_argument("--skip-imports", action="store_true")
    parser.add_argument("--skip-requests", action="store_true")
    parser.add_argument("--baseline", type=Path, help="another checkout whose api/chat.py is served beside this one's")
    parser.add_argument("--runtime-only", action="store_true", help="served processes cannot import what "
                        "requirements.txt does not install (this venv's development tools)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # figures show as they come
    ok = True
    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        bare_dir = Path(tmp)
        (bare_dir / "bare_fastapi_app.py").write_text(BARE_APP)
        if not args.skip_imports:
            ok = not imports(max(7, args.runs), args.explain, bare_dir)
        if args.runtime_only:
            BLOCKED[:] = not_deployed(ROOT)
            print(f"served processes cannot import {len(BLOCKED)} modules requirements.txt does not install, "
                  f"among them {', '.join(m for m in ('rich', 'click', 'pygments', 'h2') if m in BLOCKED)}")
        if not args.skip_requests:
            ok = requests(max(1, args.rounds), max(3, args.warm), args.gap, bare_dir,
                          args.baseline.resolve() if args.baseline else None) and ok
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
