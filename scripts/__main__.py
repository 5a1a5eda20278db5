"""`python -m scripts <group> <command>`: the runbook as commands. Each group lives in scripts/cmd_<group>.py."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Each module has register(subparsers); its commands set `func(args) -> int` (the exit code).
# Commands that start or serve a stack themselves: they never borrow a running `make dev`'s settings.
OWN_STACK = {"dev", "serve"}
COMMAND_MODULES = ["cmd_db", "cmd_workspace", "cmd_health", "cmd_dev", "cmd_build", "cmd_backup", "cmd_metrics",
                   "cmd_cache", "cmd_pinecone", "cmd_vectorize", "cmd_queue", "cmd_eval", "cmd_deps"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts", description="Dialog Engine operator commands.")
    groups = parser.add_subparsers(dest="group", required=True, metavar="GROUP")
    for name in COMMAND_MODULES:
        importlib.import_module(f"scripts.{name}").register(groups)
    args = parser.parse_args(argv)
    if args.group not in OWN_STACK:
        use_running_dev_stack()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # operators get one clear line, not a traceback
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1


def use_running_dev_stack() -> None:
    """No DATABASE_URL in the environment and `make dev` running here: use its stack (database, Redis, queue,
    secrets), as a newcomer expects `python -m scripts workspace create` next to `make dev` to do. A
    DATABASE_URL in the environment (an operator's production shell) always wins: nothing is mixed in."""
    if os.environ.get("DATABASE_URL"):
        return
    from scripts.local_stack import data_dir, running_stack_env

    found = running_stack_env()
    if found is None:
        return
    pid, env = found
    for name, value in env.items():
        os.environ.setdefault(name, value)
    print(f"using the local stack of `make dev` (pid {pid}, {data_dir()})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
