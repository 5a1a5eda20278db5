"""Cold start: each api/ file's median import time in a fresh interpreter beside a bare one-route FastAPI app.

    python bench/cold_start.py [--runs 9] [--explain] [--strict]

Rounds interleave every module in a shuffled order, so a busy machine slows all of them alike. Each import
is timed twice in its interpreter: wall clock, and CPU time (process_time), which other processes sharing
the cores don't inflate; the verdict uses CPU time, the better stand-in for a dedicated Vercel instance.
Target (ARCHITECTURE §9): at most 1.5x the bare app for every function. --explain lists, per function over
it (or all), the packages it imports beyond the bare app, who imports them and their cumulative cost.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.5
BARE_APP = '''from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root() -> dict:
    return {"ok": True}
'''
TIMER = "import sys, time; sys.path.insert(0, sys.argv[1]); t, c = time.perf_counter(), time.process_time(); " \
        "import {module}; print((time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000)"


def api_modules() -> list[str]:
    return sorted(f"api.{p.stem}" for p in (ROOT / "api").glob("*.py") if not p.name.startswith(("_", ".")))


def import_ms(module: str, path: Path) -> tuple[float, float]:
    """(wall ms, CPU ms) of importing `module` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", TIMER.format(module=module), str(path)],
                          check=False, capture_output=True, text=True, cwd=path)
    if done.returncode != 0:
        raise SystemExit(f"importing {module} failed:\n{done.stderr[-1500:]}")
    wall, cpu = done.stdout.split()[-2:]
    return float(wall), float(cpu)


def import_tree(module: str, path: Path) -> list[tuple[str, int, int, str]]:
    """(module, self us, cumulative us, the module that imported it) from one `python -X importtime` run."""
    code = f"import sys; sys.path.insert(0, {str(path)!r}); import {module}"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], check=False, capture_output=True,
                          text=True, cwd=path)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters per module (at least 7)")
    parser.add_argument("--explain", action="store_true", help="show what costs time in functions over target")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a function is over target")
    args = parser.parse_args()
    modules = api_modules()
    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        bare_dir = Path(tmp)
        (bare_dir / "bare_fastapi_app.py").write_text(BARE_APP)
        targets = [("bare_fastapi_app", bare_dir)] + [(m, ROOT) for m in modules]
        for module, path in targets:  # warm-up: compile bytecode, fill the OS page cache
            import_ms(module, path)
        samples: dict[str, list[tuple[float, float]]] = {module: [] for module, _ in targets}
        for _ in range(max(7, args.runs)):
            random.shuffle(targets)
            for module, path in targets:
                samples[module].append(import_ms(module, path))
        bare_profile = {r[0] for r in import_tree("bare_fastapi_app", bare_dir)} if args.explain else set()
    wall = {m: statistics.median(s[0] for s in v) for m, v in samples.items()}
    cpu = {m: statistics.median(s[1] for s in v) for m, v in samples.items()}
    print(f"python {sys.version.split()[0]}, {max(7, args.runs)} fresh interpreters each, median import ms\n")
    print(f"{'module':<26}{'wall ms':>9}{'ratio':>7}{'cpu ms':>9}{'ratio':>7}")
    print(f"{'bare one-route FastAPI':<26}{wall['bare_fastapi_app']:>9.1f}{1:>7.2f}{cpu['bare_fastapi_app']:>9.1f}"
          f"{1:>7.2f}")
    over = []
    for module in modules:
        ratio = cpu[module] / cpu["bare_fastapi_app"]
        if ratio > TARGET:
            over.append(module)
        print(f"{module:<26}{wall[module]:>9.1f}{wall[module] / wall['bare_fastapi_app']:>7.2f}{cpu[module]:>9.1f}"
              f"{ratio:>7.2f}{'  over target' if ratio > TARGET else ''}")
    print(f"\ntarget: every function <= {TARGET}x the bare app (CPU time); "
          + (f"over: {', '.join(over)}" if over else "all within target"))
    if args.explain:
        for module in over or modules:
            explain(module, bare_profile)
    return 1 if over and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
