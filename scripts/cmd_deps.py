"""`deps audit`: known vulnerabilities in the pinned dependencies (and what they pull in), found with pip-audit.

pip-audit asks a vulnerability service per release: PyPI's per-release JSON (`/pypi/NAME/VERSION/json`, its
default) or an OSV API (`--service osv`, `--osv-url` for a mirror). Where that service cannot answer for a
package (a registry mirror that serves only project pages answers 404 to per-release URLs, so pip-audit skips
the package and would otherwise report "No known vulnerabilities found"), the project's own PyPI record is
read instead: its `vulnerabilities` list is that of the latest release, so it is used when the pin *is* the
latest release. Whatever neither source could check is listed as NOT AUDITED, never counted as clean;
`--strict` makes that an error too.

Accepted risks live in pip-audit-ignore.txt at the repository root: one vulnerability id a line, then why it
does not apply or what covers it. An entry without a reason is refused.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
IGNORE_FILE = ROOT / "pip-audit-ignore.txt"
DEFAULT_FILES = ("requirements.txt", "requirements-server.txt", "requirements-local.txt", "requirements-dev.txt")
PYPI_JSON = "https://pypi.org/pypi"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")
IGNORE_LINE = re.compile(r"^(\S+)\s+(.*\S)\s*$")
MIN_REASON = 10  # "n/a" is not a reason


class AuditError(RuntimeError):
    """The audit could not be set up (a bad ignore list, pip-audit missing); the message says what to fix."""


@dataclass
class Package:
    name: str  # canonical (PEP 503)
    version: str
    pinned: bool  # named in a requirements file, not pulled in by one
    vulns: list[dict[str, Any]] = field(default_factory=list)  # {id, aliases, fix_versions, description}
    source: str = ""  # what audited it: "pip-audit (pypi)", "pip-audit (osv)", "PyPI project record"
    unaudited: str = ""  # why nothing could check it


def register(groups: argparse._SubParsersAction) -> None:
    deps = groups.add_parser("deps", help="dependency maintenance").add_subparsers(dest="command", required=True)
    audit = deps.add_parser("audit", help="known vulnerabilities in the pinned dependencies (pip-audit)")
    audit.add_argument("-r", "--requirement", action="append", dest="files", metavar="FILE",
                       help=f"requirements file (repeatable; -r lines followed); default: {', '.join(DEFAULT_FILES)}")
    audit.add_argument("--service", choices=("pypi", "osv"), default="pypi", help="pip-audit's vulnerability service")
    audit.add_argument("--osv-url", help="an OSV API query URL instead of api.osv.dev (a mirror), with --service osv")
    audit.add_argument("--pypi-url", default=PYPI_JSON, help="PyPI's JSON API, for project records")
    audit.add_argument("--ignore-file", type=Path, default=IGNORE_FILE, help="accepted vulnerabilities with reasons")
    audit.add_argument("--pins-only", action="store_true", help="only the pins, not what they pull in")
    audit.add_argument("--strict", action="store_true", help="also fail when a package could not be audited")
    audit.add_argument("--timeout", type=float, default=20.0, help="seconds per request to a service")
    audit.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    try:
        import pip_audit  # noqa: F401  (and packaging, which it brings)
    except ImportError as exc:
        raise AuditError("pip-audit is not installed: `pip install -r requirements-dev.txt` (make test does)") from exc
    ignores = load_ignores(args.ignore_file)
    files = [Path(f) for f in (args.files or [ROOT / name for name in DEFAULT_FILES if (ROOT / name).exists()])]
    pins = read_pins(files)
    packages = {name: Package(name, version, True) for name, (version, _) in pins.items()}
    if not args.pins_only:
        for name, version in installed_dependencies(pins).items():
            packages.setdefault(name, Package(name, version, False))
    note = run_pip_audit(list(packages.values()), args)
    missing = [p for p in packages.values() if not p.source]
    if missing:
        read_project_records(missing, args.pypi_url, args.timeout)
    return report(list(packages.values()), files, ignores, note, strict=args.strict, ignore_file=args.ignore_file)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def load_ignores(path: Path) -> dict[str, str]:
    """{vulnerability id: reason} from the ignore list; an entry without a real reason is an error."""
    ignores: dict[str, str] = {}
    if not path.exists():
        return ignores
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        match = IGNORE_LINE.match(line)
        if not match or len(match.group(2)) < MIN_REASON:
            raise AuditError(f"{path.name}:{number}: '{line}' needs a reason after the id (why it does not "
                             "apply, or what covers it, and until when)")
        ignores[match.group(1)] = match.group(2)
    return ignores


def read_pins(files: list[Path]) -> dict[str, tuple[str, set[str]]]:
    """{canonical name: (version, extras)} of every `name[extras]==version` line, following `-r other.txt`."""
    pins: dict[str, tuple[str, set[str]]] = {}
    seen: set[Path] = set()

    def read(path: Path) -> None:
        path = path.resolve()
        if path in seen:
            return
        seen.add(path)
        if not path.exists():
            raise AuditError(f"no such requirements file: {path}")
        for line in path.read_text().splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith(("-r ", "--requirement ")):
                read(path.parent / line.split(None, 1)[1])
            elif match := PIN.match(line):
                extras = {e.strip() for e in (match.group(2) or "[]")[1:-1].split(",") if e.strip()}
                pins[canonical(match.group(1))] = (match.group(3), extras)

    for path in files:
        read(path)
    return pins


def installed_dependencies(pins: dict[str, tuple[str, set[str]]]) -> dict[str, str]:
    """What the pins pull in, at the versions installed in this environment (extras and markers honoured)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    todo: list[tuple[str, set[str]]] = [(name, extras) for name, (_, extras) in pins.items()]
    while todo:
        name, extras = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here: audited at its pin only
        for text in dist.requires or []:
            req = Requirement(text)
            wanted = not req.marker or any(req.marker.evaluate({"extra": e}) for e in (extras or {""}))
            dep = canonical(req.name)
            if wanted and dep not in pins and dep not in found:
                try:
                    found[dep] = metadata.version(dep)
                except metadata.PackageNotFoundError:
                    continue
                todo.append((dep, set(req.extras)))
    return found


def run_pip_audit(packages: list[Package], args: argparse.Namespace) -> str:
    """pip-audit over exact pins (no resolution: the versions are known); fills in what its service answered and
    returns a line about the service."""
    with tempfile.TemporaryDirectory(prefix="deps-audit-") as tmp:
        pinned = Path(tmp) / "requirements.txt"
        pinned.write_text("".join(f"{p.name}=={p.version}\n" for p in packages))
        output = Path(tmp) / "audit.json"
        command = [sys.executable, "-m", "pip_audit", "-r", str(pinned), "--no-deps", "--disable-pip",
                   "--progress-spinner", "off", "-f", "json", "-o", str(output), "--aliases", "on",
                   "--desc", "off", "--timeout", str(int(args.timeout)), "--cache-dir", str(Path(tmp) / "cache"),
                   "-s", args.service] + (["--osv-url", args.osv_url] if args.osv_url else [])
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
        if not output.exists():  # the service could not be reached at all: nothing is audited by it
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return f"pip-audit ({args.service}) could not answer: {last}"
        result = json.loads(output.read_text())
    by_name = {p.name: p for p in packages}
    answered = 0
    for dep in result.get("dependencies", []):
        package = by_name.get(canonical(dep["name"]))
        if package is None or "skip_reason" in dep:
            continue
        answered += 1
        package.source = f"pip-audit ({args.service})"
        package.vulns = [{"id": v["id"], "aliases": v.get("aliases", []), "fix_versions": v.get("fix_versions", [])}
                         for v in dep.get("vulns", [])]
    skipped = len(packages) - answered
    return (f"pip-audit ({args.service}): {answered} packages answered"
            + (f", {skipped} not (the service had no record of the release)" if skipped else ""))


def read_project_records(packages: list[Package], base: str, timeout: float) -> None:
    """PyPI's project record lists the vulnerabilities of the latest release: exact when the pin is it."""
    def check(package: Package) -> None:
        try:
            reply = httpx.get(f"{base.rstrip('/')}/{package.name}/json", timeout=timeout, follow_redirects=True)
            if reply.status_code != 200:
                package.unaudited = f"no project record (HTTP {reply.status_code})"
                return
            record = reply.json()
        except (httpx.HTTPError, ValueError) as exc:
            package.unaudited = f"project record unreachable ({type(exc).__name__})"
            return
        latest = record.get("info", {}).get("version")
        if latest != package.version:
            package.unaudited = f"pinned {package.version}, latest {latest}: only the latest release's record is served"
            return
        package.source = "PyPI project record"
        package.vulns = [{"id": v["id"], "aliases": v.get("aliases") or [], "fix_versions": v.get("fixed_in") or []}
                         for v in record.get("vulnerabilities") or [] if not v.get("withdrawn")]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(check, packages))


def report(packages: list[Package], files: list[Path], ignores: dict[str, str], note: str, *, strict: bool,
           ignore_file: Path = IGNORE_FILE) -> int:
    names = ", ".join(f.name for f in files)
    pinned = sum(p.pinned for p in packages)
    print(f"deps audit: {len(packages)} packages ({pinned} pinned in {names}, {len(packages) - pinned} pulled in)")
    print(f"  {note}")
    from_records = sum(p.source == "PyPI project record" for p in packages)
    if from_records:
        print(f"  PyPI project records (pin = latest release): {from_records} packages")
    found, ignored = 0, 0
    for package in sorted(packages, key=lambda p: p.name):
        for vuln in package.vulns:
            ids = [vuln["id"], *vuln["aliases"]]
            reason = next((ignores[i] for i in ids if i in ignores), None)
            fix = ", ".join(vuln["fix_versions"]) or "no fixed release yet"
            if reason:
                ignored += 1
                print(f"  ignored  {package.name} {package.version}: {vuln['id']} (fix: {fix}) - {reason}")
            else:
                found += 1
                aliases = f" ({', '.join(vuln['aliases'])})" if vuln["aliases"] else ""
                print(f"  VULNERABLE  {package.name} {package.version}: {vuln['id']}{aliases}, fixed in: {fix}")
    unaudited = [p for p in packages if not p.source]
    for package in sorted(unaudited, key=lambda p: p.name):
        print(f"  NOT AUDITED  {package.name} {package.version}: {package.unaudited or 'no service answered'}")
    print(f"known vulnerabilities: {found} ({ignored} ignored in {ignore_file.name}); "
          f"audited {len(packages) - len(unaudited)} of {len(packages)}, not audited {len(unaudited)}")
    if found:
        print(f"fix: raise the pins to a fixed release, or add the id with a reason to {ignore_file.name}")
        return 1
    return 1 if strict and unaudited else 0
