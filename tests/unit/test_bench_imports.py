"""Benchmarks are not run by `make test`, so a rename in shared/ can break one unnoticed until someone needs its
figures (bench/chat_overhead.py and bench/retrieval.py once imported a helper the binary COPY work removed).
This reads every `from X import Y` in bench/, top-level or inside a function, for the project's own modules, and
checks that Y still exists there."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OWN = ("shared", "bench", "tests", "scripts", "functions", "api")


def own_imports() -> list[tuple[str, int, str, str]]:
    found = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] in OWN:
                found += [(path.name, node.lineno, node.module, alias.name) for alias in node.names]
    return found


def test_the_benchmarks_import_their_own_helpers() -> None:
    assert len(own_imports()) > 20  # the scan sees the benches' imports at all


@pytest.mark.parametrize(("bench", "line", "module", "name"), own_imports(),
                         ids=lambda value: str(value))
def test_every_name_a_benchmark_imports_exists(bench: str, line: int, module: str, name: str) -> None:
    imported = importlib.import_module(module)
    if hasattr(imported, name):
        return
    try:  # `from package import submodule`
        importlib.import_module(f"{module}.{name}")
    except ModuleNotFoundError:
        pytest.fail(f"bench/{bench}:{line} imports {name} from {module}, which no longer has it")
