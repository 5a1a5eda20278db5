"""shared/ is grouped by concern, and each group imports only what its package docstring allows.

Each group's __init__ docstring ends with "May import: ..." naming groups (or one module of a group, a bridge:
dialog reads knowledge only through knowledge.retrieval). This test reads every import in shared/ from the
source, top-level or inside a function (a lazy import is still a dependency), and fails on a crossing the
docstrings do not allow, on a module outside any group, and on a group that does not say what it may import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
OUTSIDE = ("api", "functions", "scripts", "tests", "bench")  # shared/ is imported by these, never the reverse

# Known crossings, each to be removed by a small code change (the fix is named). The last test fails once one
# is gone, so this list only shrinks.
CROSSINGS = {
    ("shared.core.observability", "shared.llm.registry"):
        "the secret setting names come from the provider table (fix: the registry hands its names to core)",
    ("shared.workspace.assistants", "shared.knowledge.vectors"):
        "deleting an assistant tells an external vector index (fix: knowledge owns that step of the delete)",
    ("shared.knowledge.crawl.pipeline", "shared.evals.alerts"):
        "a finished sync starts the evaluation sets that ask for it (fix: the job that finalizes a sync calls it, "
        "or a sync-finished event evals subscribes to)",
}


def groups() -> dict[str, Path]:
    return {p.name: p for p in sorted(SHARED.iterdir()) if p.is_dir() and (p / "__init__.py").exists()}


def may_import(group: str) -> set[str]:
    """The groups (or group.module bridges) this group's docstring allows, plus the group itself."""
    doc = ast.get_docstring(ast.parse((SHARED / group / "__init__.py").read_text())) or ""
    found = re.search(r"May import: ([^\n]+(?:\n[^\n]+)*)", doc)
    assert found, f"shared/{group}/__init__.py: its docstring must end with 'May import: ...' (groups or none)"
    rule = re.sub(r"\([^)]*\)", "", found.group(1))  # a remark in brackets is not a name
    if rule.startswith("every group"):
        return set(groups())
    if rule.startswith("nothing"):
        return {group}
    return {group} | {name.strip(" .\n") for name in rule.split(",")}


def module_name(path: Path) -> str:
    parts = path.relative_to(SHARED.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; `from a import b` counts as a.b when b is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SHARED.rglob("*.py")) if "__pycache__" not in p.parts}


def allowed(source: str, target: str, rules: dict[str, set[str]]) -> bool:
    group, target_group = source.split(".")[1], target.split(".")[1]
    if target_group == group or target_group in rules[group]:
        return True
    bridge = target.removeprefix("shared.")
    return any(bridge == rule or bridge.startswith(rule + ".") for rule in rules[group] if "." in rule)


def crossings() -> set[tuple[str, str]]:
    known = modules()
    rules = {group: may_import(group) for group in groups()}
    found = set()
    for name, path in known.items():
        for target in imports(path):
            if target.startswith("shared.") and target in known and not allowed(name, target, rules):
                found.add((name, target))
    return found


def test_every_module_belongs_to_a_group() -> None:
    # A folder with no source in it (bytecode a move left behind in a checkout) is not a module.
    loose = sorted(p.name for p in SHARED.iterdir() if p.suffix == ".py" or (p.is_dir() and p.name not in groups()
                                                                             and any(p.rglob("*.py"))))
    assert not loose, f"modules outside any group (move them into one of {sorted(groups())}): {loose}"


def test_every_group_says_what_it_owns_and_may_import() -> None:
    for group in groups():
        doc = ast.get_docstring(ast.parse((SHARED / group / "__init__.py").read_text())) or ""
        assert len(doc.split("May import:")[0].strip()) > 40, f"shared/{group}: say what the group owns"
        assert may_import(group) <= set(groups()) | {r for r in may_import(group) if "." in r}, group


def test_groups_import_only_what_their_docstrings_allow() -> None:
    unexpected = sorted(crossings() - set(CROSSINGS))
    assert not unexpected, "imports across groups that the docstrings do not allow:\n" + "\n".join(
        f"  {source} -> {target}" for source, target in unexpected)


def test_shared_never_imports_routes_jobs_scripts_or_tests() -> None:
    found = sorted(f"{name} -> {target}" for name, path in modules().items() for target in imports(path)
                   if target.split(".")[0] in OUTSIDE)
    assert not found, found


def test_each_known_crossing_still_exists() -> None:
    gone = sorted(set(CROSSINGS) - crossings())
    assert not gone, f"fixed, so remove them from CROSSINGS: {gone}"
