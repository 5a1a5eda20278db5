"""`python -m scripts <group> <command>`: the runbook as commands. Each group lives in scripts/cmd_<group>.py."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Each module has register(subparsers); its commands set `func(args) -> int` (the exit code).
COMMAND_MODULES = ["cmd_db", "cmd_workspace", "cmd_health", "cmd_dev", "cmd_build", "cmd_backup", "cmd_metrics",
                   "cmd_cache", "cmd_pinecone", "cmd_vectorize", "cmd_queue"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts", description="Dialog Engine operator commands.")
    groups = parser.add_subparsers(dest="group", required=True, metavar="GROUP")
    for name in COMMAND_MODULES:
        importlib.import_module(f"scripts.{name}").register(groups)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # operators get one clear line, not a traceback
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
