"""The fast tier stays fast: running tests/unit sets up neither the stack nor a stand-in server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ("stack", "engine", "openai_api", "anthropic_api", "embeddings_api", "pinecone_api", "firecrawl_api",
           "site", "s3_url", "qstash", "redis_proxy")


def test_the_unit_tier_sets_up_no_stack_or_stand_in() -> None:
    plan = subprocess.run([sys.executable, "-m", "pytest", "--setup-plan", "-q", "-p", "no:cacheprovider",
                           "tests/unit"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    set_up = {line.split()[2] for line in plan.stdout.splitlines() if line.strip().startswith("SETUP")}
    assert "environment" in set_up  # the plan was read: a unit fixture shows in it
    assert not set_up & set(SERVERS), sorted(set_up & set(SERVERS))
