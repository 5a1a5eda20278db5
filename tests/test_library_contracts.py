"""The few places that must reach into another library's private attributes, each pinned by a test here so
an upgrade that moves them fails in CI (not in production), and a scan that keeps the list from growing.

- upstash_ratelimit's SlidingWindow._limit: the generator behind its public limit(). We drive it to run
  every limit of a chat turn (and the token counter) in one Redis pipeline instead of one round trip each.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# file -> the private attributes of other libraries it may touch (each pinned by a test below).
ALLOWED = {"shared/guard/ratelimit.py": {"limiter._limit"}}
PRIVATE = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\.(_[a-z]\w*)")
GETATTR_PRIVATE = re.compile(r'"(_[a-z]\w*)"')


def test_no_other_private_attributes_of_libraries_are_used() -> None:
    found: dict[str, set[str]] = {}
    for folder in ("shared", "api", "functions", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            for owner, attr in PRIVATE.findall(path.read_text()):
                if owner in ("self", "cls", "scripts", "shared", "functions", "qstash"):  # our own objects
                    continue
                found.setdefault(str(path.relative_to(ROOT)), set()).add(f"{owner}.{attr}")
            for line in path.read_text().splitlines():
                if "getattr(" in line:
                    for attr in GETATTR_PRIVATE.findall(line):
                        found.setdefault(str(path.relative_to(ROOT)), set()).add(f"getattr {attr}")
    assert found == ALLOWED


def test_sliding_window_limit_generator_protocol_is_what_ratelimit_drives(engine) -> None:
    """eval request out, the script's integer in, a response with allowed/reset back: both decisions right."""
    from upstash_ratelimit.limiter import SlidingWindow

    from shared.core.kv import get_kv

    kv, decisions = get_kv(), []
    limiter = SlidingWindow(max_requests=1, window=60, unit="s")
    for _ in range(2):
        generator = limiter._limit("contract:ratelimit", 1)
        command, (script, keys, args) = next(generator)
        assert command == "eval" and isinstance(script, str) and keys and isinstance(args, list)
        (reply,) = kv.pipeline([["EVAL", script, len(keys), *keys, *args]])
        response = generator.send(int(reply))
        assert isinstance(response.reset, (int, float))
        decisions.append(response.allowed)
    assert decisions == [True, False]

