"""What `make build` needs to run the real `vercel build` here: the pinned CLI, uv, Python 3.12, a sane vercel.json."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERCEL_VERSION = "58.10.0"  # newer releases don't install here (PROTOCOLS.md §3)
CLI_DIR = ROOT / ".vercel" / "cli"  # under .vercel/: gitignored and never bundled into a function
STUB_PROJECT = {"projectId": "local", "orgId": "local", "settings": {}}
# The builder turns requirements.txt into these two files at the root; we remove them again if it made them.
GENERATED = ("pyproject.toml", "uv.lock")


class BuildError(RuntimeError):
    """A build step or check failed; the message says what to do."""


def vercel_cli() -> Path:
    """The pinned Vercel CLI, installed from npm into .vercel/cli on first use."""
    binary = CLI_DIR / "node_modules" / ".bin" / "vercel"
    package = CLI_DIR / "node_modules" / "vercel" / "package.json"
    if binary.exists() and package.exists() and json.loads(package.read_text())["version"] == VERCEL_VERSION:
        return binary
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        raise BuildError("vercel build needs Node.js and npm on PATH (Node 20 or newer); install them and retry.")
    CLI_DIR.mkdir(parents=True, exist_ok=True)
    print(f"installing vercel@{VERCEL_VERSION} from npm into {CLI_DIR.relative_to(ROOT)} ...", flush=True)
    done = subprocess.run([npm, "install", "--prefix", str(CLI_DIR), "--save-exact", "--no-audit", "--no-fund",
                           "--loglevel=error", f"vercel@{VERCEL_VERSION}"], check=False, capture_output=True, text=True)
    if done.returncode != 0 or not binary.exists():
        raise BuildError(f"npm could not install vercel@{VERCEL_VERSION}:\n{done.stderr[-2000:]}")
    return binary


def find_uv() -> Path:
    """uv from this venv (requirements-dev.txt pins it) or PATH; the Python builder installs with it."""
    for candidate in (Path(sys.executable).parent / "uv", shutil.which("uv")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise BuildError("vercel build needs uv on PATH: `pip install -r requirements-dev.txt` (it pins uv).")


def find_python(version: str) -> Path:
    """A real interpreter of `version` (from .python-version): pyenv's first, then PATH (shims resolved)."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"), reverse=True)
    on_path = shutil.which(f"python{version}")
    candidates += [Path(on_path)] if on_path else []
    for candidate in candidates:
        probe = subprocess.run([str(candidate), "-c", "import sys; print(sys.executable); print(sys.version)"],
                               check=False, capture_output=True, text=True)
        lines = probe.stdout.splitlines()
        if probe.returncode == 0 and len(lines) >= 2 and lines[1].startswith(version + "."):
            return Path(lines[0])
    raise BuildError(f"vercel build needs a Python {version} on PATH (the version .python-version names, which "
                     f"Vercel runs); none found in {pyenv_root}/versions or as python{version}. Install one, "
                     f"e.g. `pyenv install {version}`, or put its bin/ on PATH.")


def python_version() -> str:
    path = ROOT / ".python-version"
    return path.read_text().strip() if path.exists() else "3.12"


def function_files() -> list[str]:
    """api/*.py files Vercel turns into functions: not starting with `_` or `.`."""
    return sorted(f"api/{p.name}" for p in (ROOT / "api").glob("*.py") if not p.name.startswith(("_", ".")))


def first_match(path: str, functions: dict) -> str | None:
    """Vercel applies the FIRST `functions` key that matches a file; later matching keys are not merged."""
    return next((key for key in functions if key == path or fnmatch.fnmatchcase(path, key)), None)


def check_config(allow_missing: bool) -> tuple[dict, Path | None]:
    """Catch vercel.json mistakes that make `vercel build` fail with a misleading message.

    Returns the config and, with `allow_missing`, a copy without entries naming absent files (or None)."""
    config = json.loads((ROOT / "vercel.json").read_text())
    functions = config.get("functions", {})
    files = function_files()
    used = {first_match(f, functions) for f in files}
    problems, missing = [], []
    for key in functions:
        if key in used:
            continue
        if "*" not in key and not (ROOT / key).exists():
            missing.append(key)
            continue
        shadow = next((k for k in functions if k in used and k != key and fnmatch.fnmatchcase(key, k)), None)
        if shadow is None:
            problems.append(f'functions entry "{key}" matches no function file in api/ (Vercel refuses the build).')
            continue
        problems.append(f'functions entry "{key}" comes after "{shadow}", which also matches it: Vercel applies '
                        f'only the first matching entry (no merging), so its settings are ignored and the build '
                        f'fails ("doesn\'t match any Serverless Functions"). Put specific entries first, each '
                        f'with its own excludeFiles.')
    if missing and not allow_missing:
        problems.append("functions entries name files that don't exist (Vercel refuses the build): "
                        + ", ".join(missing) + ". Create them, or run `python -m scripts build --allow-missing` "
                        "to check the rest meanwhile.")
    if problems:
        raise BuildError("vercel.json:\n  - " + "\n  - ".join(problems))
    if not missing:
        return config, None
    print(f"WARNING: building without the functions entries {', '.join(missing)} (no such files); "
          "a real deployment fails until they exist.", flush=True)
    trimmed = {**config, "functions": {k: v for k, v in functions.items() if k not in missing}}
    local = ROOT / ".vercel" / "vercel.build.json"
    local.parent.mkdir(exist_ok=True)
    local.write_text(json.dumps(trimmed, indent=2))
    return trimmed, local


def run_vercel_build(local_config: Path | None) -> float:
    """`vercel build --yes` in the repo (output in .vercel/output); returns the seconds it took."""
    cli, uv, python = vercel_cli(), find_uv(), find_python(python_version())
    project = ROOT / ".vercel" / "project.json"
    stub = not project.exists()  # never overwrite a real link, and don't leave ours for `vercel deploy` to find
    if stub:
        project.parent.mkdir(exist_ok=True)
        project.write_text(json.dumps(STUB_PROJECT))
    env = {**os.environ, "VERCEL_TELEMETRY_DISABLED": "1",
           "PATH": os.pathsep.join([str(python.parent), str(uv.parent), os.environ.get("PATH", "")])}
    env.pop("VIRTUAL_ENV", None)  # the builder makes its own venv in .vercel/python
    command = [str(cli), "build", "--yes"] + (["--local-config", str(local_config)] if local_config else [])
    remove_generated()  # left behind by an interrupted build: the builder would take them for our manifest
    marker = ROOT / ".vercel" / "generated-files.json"
    marker.write_text(json.dumps([name for name in GENERATED if not (ROOT / name).exists()]))
    log = ROOT / ".vercel" / "build.log"
    print(f"vercel build (CLI {VERCEL_VERSION}, {python.name} at {python.parent}, uv at {uv.parent}) ...", flush=True)
    start = time.perf_counter()
    try:
        with log.open("w") as out:
            done = subprocess.run(command, check=False, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    finally:
        remove_generated()
        if stub:
            project.unlink(missing_ok=True)
        if local_config:
            local_config.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise BuildError(f"vercel build failed (exit {done.returncode}); full log in .vercel/build.log:\n{tail}")
    return seconds


def remove_generated() -> None:
    """Delete the pyproject.toml / uv.lock the builder wrote at the root (only those it wrote)."""
    marker = ROOT / ".vercel" / "generated-files.json"
    if marker.exists():
        for name in json.loads(marker.read_text()):
            if name in GENERATED:
                (ROOT / name).unlink(missing_ok=True)
        marker.unlink()


# vercel/vercel#17620: `vercel dev` fails every Python function whose `functions` entry sets these ("The result of
# builder.build() must not contain maxDuration"); they only matter deployed, so the dev config leaves them out.
DEV_ONLY_WITHOUT = ("maxDuration", "memory")


def vercel_dev_config(env: dict[str, str], path: Path = ROOT / ".vercel" / "vercel.dev.json") -> Path:
    """vercel.json for `vercel dev`: the same functions, rewrites and headers, without DEV_ONLY_WITHOUT, and
    `env`: vercel dev gives functions only that and the variables of `.env`, never its own environment."""
    config = json.loads((ROOT / "vercel.json").read_text())
    for spec in config.get("functions", {}).values():
        for key in DEV_ONLY_WITHOUT:
            spec.pop(key, None)
    config["env"] = dict(sorted(env.items()))
    # Local secrets: under .vercel/ (gitignored, never deployed), readable by us only.
    path.parent.mkdir(exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(config, indent=2))
    return path


def run_vercel_dev(port: int, stack_env: dict[str, str]) -> int:
    """`vercel dev --local` on 127.0.0.1:port, its functions given `stack_env` (the local stack's settings): no
    account and no link needed, nothing is pulled from Vercel. Each function is built on its first request (uv installs
    requirements.txt into .vercel/cache), so the first call of each takes a while."""
    cli, uv, python = vercel_cli(), find_uv(), find_python(python_version())
    env = {**os.environ, "VERCEL_TELEMETRY_DISABLED": "1", "NO_UPDATE_NOTIFIER": "1",
           "PATH": os.pathsep.join([str(python.parent), str(uv.parent), os.environ.get("PATH", "")])}
    env.pop("VIRTUAL_ENV", None)  # the builder makes its own venv per function
    command = [str(cli), "dev", "--local", "--yes", "--listen", f"127.0.0.1:{port}",
               "--local-config", str(vercel_dev_config(stack_env))]
    print(f"vercel dev (CLI {VERCEL_VERSION}, local mode, {python.name}) on http://localhost:{port} ...", flush=True)
    child = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        return child.wait()
    finally:  # Ctrl-C, kill: vercel dev stops its function processes itself when asked to
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
