"""Parse untrusted files (uploads, crawled PDFs) in a child process that can be stopped.

The child runs with an address-space cap (RLIMIT_AS) and a CPU cap, and the parent kills it after a
wall-clock timeout, so a zip bomb or a PDF built to be slow ends the child, never the API or job process
that asked. The child reads the bytes on stdin and answers one JSON object on stdout (nothing is
unpickled: a parser exploited by a hostile file cannot hand the parent code). A plain subprocess rather
than multiprocessing: no fork of a threaded server, no /dev/shm (AWS Lambda has none).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.knowledge.crawl import CrawlError

MAX_PARALLEL_PARSES = 2    # children per process: with PARSE_MAX_MEMORY_MB each, they must fit the function
PROJECT_ROOT = str(Path(__file__).resolve().parents[3])
# Codes a caller answers with 413 (the file is too large once unpacked); the other limits answer 422.
TOO_LARGE_CODES = frozenset({"decompressed_too_large", "too_many_pages"})

_slots = threading.BoundedSemaphore(MAX_PARALLEL_PARSES)


@dataclass(frozen=True)
class ParseLimits:
    max_decompressed_bytes: int
    max_pages: int
    timeout_s: float
    max_memory_mb: int

    @classmethod
    def from_settings(cls) -> ParseLimits:
        from shared.core.settings import get_settings

        s = get_settings()
        return cls(s.parse_max_decompressed_bytes, s.parse_max_pages, s.parse_timeout_s, s.parse_max_memory_mb)


class ParseLimitError(CrawlError):
    """A file went past one of the parse bounds; `setting` names the variable, `limit` its value."""

    def __init__(self, code: str, message: str, *, setting: str, limit: float) -> None:
        super().__init__(code, message)
        self.setting = setting
        self.limit = limit


def run(task: str, data: bytes, args: dict[str, str] | None = None, *,
        limits: ParseLimits | None = None) -> dict[str, Any]:
    """`task` (a parser in shared.knowledge.crawl.extract.BOUNDED_PARSERS, given `args`) over `data` in a bounded
    child."""
    limits = limits or ParseLimits.from_settings()
    if not _slots.acquire(timeout=limits.timeout_s):
        raise CrawlError("parser_busy", "Other files are being read right now; try again in a minute.",
                         retryable=True)
    try:
        return _run_child(task, data, limits, args or {})
    finally:
        _slots.release()


def _run_child(task: str, data: bytes, limits: ParseLimits, args: dict[str, str]) -> dict[str, Any]:
    job = json.dumps({"task": task, "limits": asdict(limits), "args": args})
    command = [sys.executable or "python3", "-B", "-m", "shared.knowledge.crawl.sandbox", job]
    try:
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 env=_child_env(), cwd=PROJECT_ROOT, start_new_session=True)
    except OSError as exc:  # no interpreter to start, or out of processes: a later try may work
        raise CrawlError("parser_unavailable", f"The file parser could not start ({type(exc).__name__}).",
                         retryable=True) from None
    try:
        out, _ = child.communicate(data, timeout=limits.timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise timeout_error(limits) from None
    try:
        answer = json.loads(out)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("ok"), dict):
        return answer["ok"]
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        raise _error_from(answer["error"])
    if child.returncode == -signal.SIGXCPU:
        raise timeout_error(limits)
    # Killed by a signal or died without answering: what usually does that is running out of memory.
    raise ParseLimitError("parse_failed", f"The parser stopped without a result (exit {child.returncode}); the "
                                          f"file may need more than {limits.max_memory_mb} MB (PARSE_MAX_MEMORY_MB).",
                          setting="PARSE_MAX_MEMORY_MB", limit=limits.max_memory_mb)


def timeout_error(limits: ParseLimits) -> ParseLimitError:
    return ParseLimitError("parse_timeout", f"Reading the file took longer than {limits.timeout_s:g} s "
                                            f"(PARSE_TIMEOUT_S).", setting="PARSE_TIMEOUT_S", limit=limits.timeout_s)


def memory_error(limits: ParseLimits) -> ParseLimitError:
    return ParseLimitError("parse_out_of_memory", f"Reading the file needs more than {limits.max_memory_mb} MB "
                                                  f"(PARSE_MAX_MEMORY_MB).",
                           setting="PARSE_MAX_MEMORY_MB", limit=limits.max_memory_mb)


def _error_from(error: dict[str, Any]) -> CrawlError:
    code, message = str(error.get("code"))[:64], str(error.get("message"))[:500]
    if error.get("setting"):
        limit = error.get("limit")
        return ParseLimitError(code, message, setting=str(error["setting"])[:64],
                               limit=limit if isinstance(limit, int | float) else 0)
    return CrawlError(code, message)


def _child_env() -> dict[str, str]:
    """Only what Python needs to start and find our code: no secrets reach the parser."""
    path = [PROJECT_ROOT] + [p for p in sys.path if p and p != PROJECT_ROOT and os.path.isdir(p)]
    env = {"PYTHONPATH": os.pathsep.join(path), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    if "PATH" in os.environ:
        env["PATH"] = os.environ["PATH"]
    return env


# --- the child ---------------------------------------------------------------------------------------

def _cap_resources(limits: ParseLimits) -> None:
    import math
    import resource

    memory = limits.max_memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = math.ceil(limits.timeout_s) + 1  # a backstop should the parent be frozen or gone
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def _error_payload(exc: CrawlError) -> dict[str, Any]:
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, ParseLimitError):
        error.update(setting=exc.setting, limit=exc.limit)
    return {"error": error}


def _parse(job: dict[str, Any], limits: ParseLimits) -> bytes:
    from shared.knowledge.crawl.extract import BOUNDED_PARSERS

    title, markdown = BOUNDED_PARSERS[job["task"]](sys.stdin.buffer.read(), limits, **job["args"])
    return json.dumps({"ok": {"title": title, "markdown": markdown}}).encode()


def main() -> None:
    job = json.loads(sys.argv[1])
    limits = ParseLimits(**job["limits"])
    _cap_resources(limits)
    error: dict[str, Any] | None = None
    try:
        out = _parse(job, limits)
    except CrawlError as exc:
        error = _error_payload(exc)
    except MemoryError:
        error = _error_payload(memory_error(limits))
    except Exception as exc:  # a parser bug: still one clear answer
        error = {"error": {"code": "unreadable_file", "message": f"The file could not be read ({type(exc).__name__})."}}
    if error is not None:  # after the except blocks: the failed parse's memory is released by now
        out = json.dumps(error).encode()
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    # Through the module, not __main__: the parsers raise shared.knowledge.crawl.sandbox's ParseLimitError.
    from shared.knowledge.crawl.sandbox import main as module_main

    module_main()
