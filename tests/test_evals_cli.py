"""`python -m scripts eval run`: runs a set over the HTTP API, prints the table, exits 1 below a threshold."""

from __future__ import annotations

from typing import Any

from scripts.__main__ import main
from tests.eval_fixtures import RETURNS, SUPPORT, load_knowledge, make_set
from tests.fakes.chat_fixtures import make_assistant

CASES = [{"question": "How long until refunds are paid?", "expected_sources": [{"url": RETURNS}]},
         {"question": "When do parcels ship?", "expected_sources": [{"url": SUPPORT}]}]  # not retrieved: a miss


def test_the_ci_command_fails_below_the_threshold_and_passes_at_it(engine: Any, capsys: Any) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace)
        load_knowledge(conn, workspace, assistant_id)
    make_set(engine.client(key), assistant_id, CASES)
    command = ["eval", "run", "--assistant", assistant_id, "--url", engine.url, "--key", key]

    assert main([*command, "--fail-under", "hit@5=0.9", "--fail-over", "cost_usd=0"]) == 1
    out = capsys.readouterr().out
    assert "template default v1, 2 cases" in out
    assert "| hit@5 | 0.5 | >= 0.9 | FAIL |" in out and "| cost_usd | 0 | <= 0 | ok |" in out
    assert "FAILED: hit@5 0.5 (needs >= 0.9)" in out

    assert main([*command, "--version", "1", "--fail-under", "hit@5=0.5"]) == 0
    assert "| hit@5 | 0.5 | >= 0.5 | ok |" in capsys.readouterr().out

    assert main([*command, "--fail-under", "hit@7=0.5"]) == 1
    assert "unknown metric" in capsys.readouterr().err
    make_set(engine.client(key), assistant_id, CASES, name="Second")
    assert main(command) == 1
    assert "has 2 evaluation sets" in capsys.readouterr().err
