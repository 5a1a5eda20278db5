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


# Variables DEPLOYMENT.md names that are not settings of the engine, each with the file that reads it.
NOT_SETTINGS = {
    "AWS_ACCESS_KEY_ID": ".github/workflows/backup.yml",  # boto3 reads the AWS credentials itself
    "AWS_SECRET_ACCESS_KEY": ".github/workflows/backup.yml",
    "BACKUP_VERIFY": ".github/workflows/backup.yml",  # a repository variable of the workflow
    "POSTGRES_PASSWORD": "docker-compose.yml",        # compose's own
    "SRH_TOKEN": "docker-compose.yml",
    "POSTGRES_URL_NON_POOLING": "shared/core/settings.py",  # Vercel Postgres's name, read as DATABASE_URL_UNPOOLED
    "BACKUP_PASSPHRASE": "shared/ops/backup.py",          # the old format, named in the refusal message
    "ASSISTANT_ID": "DEPLOYMENT.md",                   # shell variables of the examples
    "RESTORE_DATABASE_URL": "DEPLOYMENT.md",
}


def test_every_variable_the_runbook_names_is_a_setting_or_read_where_it_says() -> None:
    from shared.core.settings import Settings

    settings = {name.upper() for name in Settings.model_fields}
    example = {line.split("=", 1)[0].strip() for line in (ROOT / ".env.example").read_text().splitlines()
               if "=" in line and not line.startswith("#")}
    named = set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", RUNBOOK.read_text()))
    for name in sorted(named - settings - example):
        assert name in NOT_SETTINGS, f"DEPLOYMENT.md names {name}: neither a setting nor in .env.example"
        where = ROOT / NOT_SETTINGS[name]
        assert name in where.read_text() or name.lower() in where.read_text(), f"{name} is not in {where}"


def test_every_make_target_the_docs_name_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    for doc in ("README.md", "DEPLOYMENT.md"):
        for target in set(re.findall(r"`make ([a-z][a-z-]*)", (ROOT / doc).read_text())):
            assert target in targets, f"{doc} names `make {target}`, which the Makefile does not have"
