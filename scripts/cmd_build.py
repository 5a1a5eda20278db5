"""`build`: the real `vercel build` offline, then check every function boots under Vercel's own runtime."""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from scripts._vercel_tools import (
    GENERATED,
    ROOT,
    BuildError,
    check_config,
    find_python,
    first_match,
    function_files,
    python_version,
    run_vercel_build,
)

OUTPUT = ROOT / ".vercel" / "output"
# Never in a function bundle: dev-only code, local data, secrets (excludeFiles in vercel.json keeps them out).
FORBIDDEN = ("tests/", "bench/", "scripts/", ".data/", ".venv/", ".vercel/", "node_modules/", "public/",
             "test-artifacts/")
# Above this Vercel stops shipping dependencies in the bundle and installs them at every cold start.
BUNDLE_BUDGET = 225 * 1024 * 1024
OWN_CODE_BUDGET = 5 * 1024 * 1024
PROBE = (Path(__file__).parent / "_vercel_probe.py").read_text()


def register(groups: argparse._SubParsersAction) -> None:
    build = groups.add_parser("build", help="run the real `vercel build` and check every function boots on it")
    build.add_argument("--runs", type=int, default=3, help="fresh-interpreter imports per function (median)")
    build.add_argument("--allow-missing", action="store_true",
                       help="skip vercel.json functions entries whose file doesn't exist yet (warns)")
    build.add_argument("--no-build", action="store_true", help="only check the existing .vercel/output")
    build.set_defaults(func=cmd_build)


def cmd_build(args: argparse.Namespace) -> int:
    config, local_config = check_config(args.allow_missing)
    (ROOT / ".vercel").mkdir(exist_ok=True)
    with (ROOT / ".vercel" / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time in this tree: they share .vercel/ and the root
        seconds = None if args.no_build else run_vercel_build(local_config)
        if seconds is not None:
            print(f"vercel build finished in {seconds:.1f} s", flush=True)
        failures = check_output(config, max(1, args.runs))
    if failures:
        raise BuildError(f"{len(failures)} problem(s) in the build:\n  - " + "\n  - ".join(failures))
    print("build ok: every api/ file is a function Vercel's runtime boots as ASGI")
    return 0


def check_output(config: dict, runs: int) -> list[str]:
    """Every check on .vercel/output; returns the failures (empty when all is well)."""
    if not (OUTPUT / "config.json").exists():
        return ["no .vercel/output: run `python -m scripts build` without --no-build first"]
    failures = check_static()
    expected = {f[len("api/"):-len(".py")] for f in function_files()}
    built = {p.name[:-len(".func")] for p in (OUTPUT / "functions" / "api").glob("*.func")}
    failures += [f"api/{n}.py did not become a function (.vercel/output/functions/api/{n}.func)"
                 for n in sorted(expected - built)]
    failures += [f"unexpected function api/{n}.func (no api/{n}.py)" for n in sorted(built - expected)]
    python = find_python(python_version())
    rows = []
    with tempfile.TemporaryDirectory(prefix="vercel-probe-") as tmp:
        for name in sorted(expected & built):
            row, problems = check_function(name, config, python, Path(tmp), runs)
            rows.append(row)
            failures += [f"api/{name}.py: {p}" for p in problems]
    print_table(rows)
    return failures


def check_static() -> list[str]:
    """Only public/ may be served: with it empty or missing Vercel serves the repository root, source and all."""
    leaked = [p.relative_to(OUTPUT / "static").as_posix() for p in (OUTPUT / "static").rglob("*")
              if p.is_file() and (p.suffix == ".py" or p.name.startswith(".env") or p.name == "requirements.txt")]
    if leaked:
        return [(f"the static output serves source files ({', '.join(leaked[:5])}, ...): public/ is empty or "
                 "missing, so Vercel serves the repository root. Put the site in public/.")]
    return []


def check_function(name: str, config: dict, python: Path, tmp: Path, runs: int) -> tuple[dict, list[str]]:
    func = OUTPUT / "functions" / "api" / f"{name}.func"
    vc = json.loads((func / ".vc-config.json").read_text())
    files: dict[str, str] = vc.get("filePathMap", {})
    problems = []
    leaked = sorted({k.split("/")[0] for k in files if k.startswith(FORBIDDEN) or is_secret(k)})
    if leaked:
        problems.append(f"the bundle contains {', '.join(leaked)}: excludeFiles in vercel.json must keep them out")
    # The builder's own pyproject.toml / uv.lock (made from requirements.txt) are gone by now; they don't run.
    files = {k: v for k, v in files.items() if (ROOT / v).exists() or v not in GENERATED}
    gone = [k for k, v in files.items() if not (ROOT / v).exists()]
    if gone:
        return {"name": name, "size": 0, "own": 0, "files": len(files)}, problems + [
            f"{len(gone)} bundled files are gone since the build ({', '.join(gone[:3])}, ...): build again"]
    sizes = {k: (ROOT / v).stat().st_size for k, v in files.items()}
    total, own = sum(sizes.values()), sum(s for k, s in sizes.items() if not k.startswith("_vendor/"))
    if total > BUNDLE_BUDGET:
        problems.append(f"bundle is {total / 2**20:.0f} MiB, over {BUNDLE_BUDGET / 2**20:.0f} MiB: Vercel would "
                        "install dependencies at every cold start")
    if own > OWN_CODE_BUDGET:
        problems.append(f"our own files weigh {own / 2**20:.1f} MiB in the bundle: something large is not excluded")
    entry = first_match(f"api/{name}.py", config.get("functions", {}))
    want = config["functions"][entry].get("maxDuration") if entry else None
    if want is not None and vc.get("maxDuration") != want:
        problems.append(f"maxDuration is {vc.get('maxDuration')}, vercel.json says {want}")
    if not vc.get("runtime", "").startswith("python"):
        problems.append(f"runtime is {vc.get('runtime')!r}, not Python")
    bundle = materialise(func, files, tmp)
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(tmp),
           "LAMBDA_TASK_ROOT": str(bundle), "PYTHONPYCACHEPREFIX": str(tmp / "pycache"),
           **{k: v for k, v in vc.get("environment", {}).items() if k != "PYTHONDONTWRITEBYTECODE"}}
    first, error = probe(python, bundle, env, request=True)  # also compiles bytecode, as Vercel's build does
    if first is None:
        return {"name": name, "size": total, "own": own, "files": len(files)}, problems + [error]
    problems += judge(first)
    times = [probe(python, bundle, env)[0] for _ in range(runs)]
    boots = [t["boot_ms"] for t in times if t]
    apps = [t["app_import_ms"] for t in times if t and t.get("app_import_ms") is not None]
    cpus = [t["app_import_cpu_ms"] for t in times if t and t.get("app_import_cpu_ms") is not None]
    return {"name": name, "size": total, "own": own, "files": len(files), "duration": vc.get("maxDuration"),
            "boot": statistics.median(boots) if boots else None,
            "app": statistics.median(apps) if apps else None, "cpu": statistics.median(cpus) if cpus else None,
            "status": first["response"]["status"]}, problems


def is_secret(path: str) -> bool:
    """A dotenv file with real values (.env, .env.local, ...); the documented .env.example is harmless."""
    return (path == ".env" or path.startswith(".env.")) and path != ".env.example"


def materialise(func: Path, files: dict[str, str], tmp: Path) -> Path:
    """The function as Lambda unpacks it (/var/task), as symlinks into the repo and the builder's venv.

    Functions with the same file map share one tree (and so one bytecode cache); only the trampoline differs."""
    target = tmp / f"bundle-{hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()[:12]}"
    if not target.exists():
        for bundle_path, source in files.items():
            link = target / bundle_path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(ROOT / source)
    for extra in func.iterdir():
        if extra.name != ".vc-config.json":
            shutil.copyfile(extra, target / extra.name)
    return target


def probe(python: Path, bundle: Path, env: dict, request: bool = False) -> tuple[dict | None, str]:
    # -S: no site-packages of the interpreter, so only the bundle's _vendor can satisfy imports (as on Lambda).
    command = [str(python), "-S", "-c", PROBE] + (["--request"] if request else [])
    done = subprocess.run(command, check=False, cwd=bundle, env=env, capture_output=True, text=True, timeout=120)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PROBE ")), None)
    if done.returncode != 0 or line is None:
        tail = "\n      ".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        return None, f"Vercel's runtime could not boot it (exit {done.returncode}):\n      {tail}"
    return json.loads(line[len("PROBE "):]), ""


def judge(report: dict) -> list[str]:
    """What Vercel's runtime saw: `app` picked and ASGI, no `handler`, no heavy SDK, a real answer."""
    problems = []
    if report["variable"] != "app" or report["interface"] != "asgi":
        problems.append(f"Vercel resolved {report['variable']!r} as {report['interface']}, expected app as asgi")
    if report["has_handler"]:
        problems.append("defines a module-level `handler` (older Vercel runtimes take it for a "
                        "BaseHTTPRequestHandler class and die at start); name the Lambda entry `lambda_handler`")
    if not report["has_lambda_handler"]:
        problems.append("has no `lambda_handler = Mangum(app)`")
    outside = [p for p in report["shared_from"] + [report["module_file"]] if not p.startswith(report["root"])]
    if outside:
        problems.append(f"code was imported from outside the bundle ({', '.join(outside)}): the deployed "
                        "function would not find it")
    if report["heavy_modules"]:
        problems.append(f"importing it loads {', '.join(report['heavy_modules'])}: import SDKs on first use")
    response = report["response"]
    if response["status"] != 404 or '"error"' not in response["body"]:
        problems.append(f"a route miss through Vercel's handler answered {response['status']} "
                        f"{response['body'][:200]!r}, expected our 404 error JSON")
    for header in ("x-frame-options", "x-content-type-options", "referrer-policy"):
        if header not in response["headers"]:
            problems.append(f"the response through Vercel's handler lacks {header}")
    return problems


def print_table(rows: list[dict]) -> None:
    print(f"\n{'function':<22}{'files':>7}{'bundle MiB':>12}{'own KiB':>9}{'maxDur':>8}"
          f"{'boot ms':>9}{'import ms':>11}{'(cpu)':>7}{'probe':>7}")

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    for r in rows:
        print(f"api/{r['name']:<18}{r['files']:>7}{r['size'] / 2**20:>12.1f}{r['own'] / 1024:>9.0f}"
              f"{r.get('duration') or '-':>8}{ms(r.get('boot')):>9}{ms(r.get('app')):>11}{ms(r.get('cpu')):>7}"
              f"{r.get('status') or 'fail':>7}")
    print("boot ms: Vercel's trampoline + vercel_runtime + our module in a fresh python3.12 -S; import ms: our "
          "module alone (wall, and CPU time); medians.\n", flush=True)
