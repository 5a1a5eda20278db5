"""The console's Evaluations page: make a set, draft and accept cases, run it twice, compare the two runs."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.helpers import screenshot
from tests.eval_fixtures import load_knowledge
from tests.fakes.chat_fixtures import make_assistant


def test_console_drafts_runs_and_compares_an_evaluation_set(engine: Any, browser: Any) -> None:
    workspace, admin_key = engine.workspace()
    with engine.db() as conn:
        load_knowledge(conn, workspace, make_assistant(conn, workspace))
    page = browser().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(engine.url + "/admin")
    page.get_by_label("Admin key").fill(admin_key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Evaluations").click()
    expect(page.get_by_text("No evaluation set for this assistant yet.")).to_be_visible()

    page.get_by_label("New set").fill("Core questions")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_label("Evaluation set")).to_contain_text("Core questions (0/0)")
    page.get_by_role("button", name="Draft cases from the knowledge").click()
    expect(page.get_by_role("row", name=re.compile("What should I know about refunds"))).to_contain_text("draft")
    page.get_by_role("button", name="Accept all drafts").click()
    expect(page.get_by_role("row", name=re.compile("What should I know about refunds"))).to_contain_text("active")
    expect(page.get_by_label("Evaluation set")).to_contain_text("Core questions (6/0)")
    for _ in range(2):
        page.get_by_role("button", name="Run", exact=True).click()
        engine.wait_for_queue(timeout=60)
    finished = page.get_by_role("row", name=re.compile("finished"))
    expect(finished).to_have_count(2, timeout=20_000)
    for box in page.get_by_role("checkbox", name="Compare this run").all():
        box.check()
    expect(page.get_by_role("heading", name="v1 compared with v1")).to_be_visible()
    expect(page.get_by_role("row", name="hit@5 1 1 0")).to_be_visible()  # found by both runs, no change
    screenshot(page, "console-evals")
    assert errors == []
