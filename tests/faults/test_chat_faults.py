"""Chat under faults: models failing at random, Redis down or stalled in windows, PostgreSQL connections
killed while answers stream. What a user would notice is asserted; timings are only printed.

Every acknowledged user message is stored exactly once; every acknowledged turn ends complete, partial
or failed with a stored reason, or its `done` says the reply could not be stored (store_failed); no 5xx
goes out without the JSON error body. FAULT_SEED picks another random run.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.fakes.chat_fixtures import clear_caches, make_assistant
from tests.fakes.openai_server import FaultPlan
from tests.faults.chat_chaos import Chaos, audit, concurrent_turns, run_turns

SEED = int(os.environ.get("FAULT_SEED", "20261203"))
REPLY = "A short answer that streams in a dozen small pieces, so faults land mid-answer."


@pytest.fixture
def fault_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Many turns a minute from one key: limits off. Timeouts short, so a stalled part costs little.
    for name, value in {"RATE_CHAT_PER_KEY_PER_MINUTE": "0", "RATE_CHAT_PER_USER_PER_MINUTE": "0",
                        "DAILY_TOKEN_BUDGET": "0", "LLM_FIRST_TOKEN_TIMEOUT_S": "2", "REDIS_TIMEOUT_S": "0.5",
                        "REDIS_BREAKER_S": "1"}.items():
        monkeypatch.setenv(name, value)
    clear_caches()


def test_chat_turns_under_random_faults(engine: Any, openai_api: Any, anthropic_api: Any,
                                        redis_proxy: Any, fault_settings: None) -> None:
    for n, fake in enumerate((openai_api, anthropic_api)):
        fake.reply, fake.chunk_chars, fake.delay = REPLY, 7, 0.01
        fake.faults = FaultPlan(SEED + n, rate=0.3)
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    with Chaos(SEED, redis_proxy, engine.stack.admin_dsn, engine.dsn) as chaos:
        results = run_turns(engine.url, key, assistant, turns=120, workers=6, seed=SEED)
    summary = audit(results, engine.dsn, chaos.counts)
    print("\n" + summary.line())

    assert summary.lost == 0 and summary.duplicated == 0
    assert summary.unfinished == 0 and summary.reasonless == 0
    assert summary.bare_5xx == 0
    # The faults really happened, and most turns still got through.
    assert chaos.counts["pg_killed"] > 0 and summary.failovers > 0
    assert summary.acknowledged >= summary.turns // 2


def test_64_concurrent_streaming_turns_all_complete(engine: Any, openai_api: Any,
                                                   fault_settings: None) -> None:
    openai_api.reply, openai_api.delay = REPLY, 0.01
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    results = concurrent_turns(engine.url, key, assistant, 64)
    summary = audit(results, engine.dsn)
    print("\n64 concurrent " + summary.line())
    assert [r.done["status"] if r.done else r.http_status for r in results] == ["complete"] * 64
    assert all(r.done and r.done["stored"] for r in results)
    assert summary.lost == 0 and summary.duplicated == 0
