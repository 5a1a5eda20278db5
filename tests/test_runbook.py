"""DEPLOYMENT.md names only commands that exist: every `python -m scripts ...` line in its code blocks parses."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex

import pytest

from tests.conftest import ROOT

RUNBOOK = ROOT / "DEPLOYMENT.md"
WORD = re.compile(r"^[a-z][a-z0-9-]*$")


def documented_commands() -> list[list[str]]:
    """The arguments after `python -m scripts` on each line of each fenced code block and in inline code
    spans, shell syntax stripped."""
    text = RUNBOOK.read_text()
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    spans = re.findall(r"(?<!`)`([^`\n]*python -m scripts [^`\n]*)`(?!`)", re.sub(r"^```.*?^```", "", text,
                                                                               flags=re.MULTILINE | re.DOTALL))
    found: list[list[str]] = []
    for line in "\n".join(blocks + spans).splitlines():
        for rest in line.split("python -m scripts")[1:]:
            words = []
            for token in shlex.split(rest, comments=True):
                if token in {"&&", "||", "|", ";"}:
                    break
                words.append(token)
            if words and WORD.match(words[0]) and words not in found:  # not the prose's "python -m scripts ..."
                found.append(words)
    return found


COMMANDS = documented_commands()


def group_and_command(words: list[str]) -> list[str]:
    """`backup restore 2025-06-01 --yes` -> [backup, restore]; `serve --port 8000` -> [serve]."""
    head = [words[0]]
    if len(words) > 1 and WORD.match(words[1]):
        head.append(words[1])
    return head


def parser() -> argparse.ArgumentParser:
    from scripts.__main__ import COMMAND_MODULES

    root = argparse.ArgumentParser(prog="python -m scripts")
    groups = root.add_subparsers(dest="group", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"scripts.{name}").register(groups)
    return root


def exit_code(args: list[str]) -> int:
    """Parse like `python -m scripts ARGS` does, without running anything; argparse's exit code (0 = fine)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            parser().parse_args(args)
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0


def test_the_check_itself_catches_a_missing_command():
    assert exit_code(["backup", "explode", "--help"]) != 0
    assert exit_code(["backup", "restore", "2025-06-01", "--into", "x"]) != 0  # an option it does not have
    assert exit_code(["backup", "restore", "2025-06-01", "--target-url", "x"]) == 0


def test_the_runbook_names_the_operations_of_architecture_section_8():
    named = {" ".join(group_and_command(words)) for words in COMMANDS}
    for expected in ("db migrate", "redis test", "queue init", "pinecone create-index", "pinecone configure",
                     "health pinecone", "vectorize all", "health all", "backup create", "backup list",
                     "backup restore", "backup verify", "cache stats", "cache clear", "metrics show",
                     "db slow-queries"):
        assert expected in named, f"DEPLOYMENT.md has no code block running `python -m scripts {expected}`"


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(w) for w in COMMANDS])
def test_each_documented_command_exists(words: list[str]) -> None:
    head = group_and_command(words)
    assert exit_code([*head, "--help"]) == 0, f"`python -m scripts {' '.join(head)} --help` fails"
    # The whole documented line parses too: no option or choice that the command does not have.
    assert exit_code(words) == 0, f"`python -m scripts {' '.join(words)}` does not parse"
