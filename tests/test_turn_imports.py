"""A fresh instance's chat turns never import the model SDKs: the providers and the query embedding speak
HTTP themselves, so neither the first turn nor the instance's first failover waits for `import openai`
(about a whole function's import) or `import anthropic` (three times that)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fakes.chat_fixtures import make_assistant

ROOT = Path(__file__).resolve().parent.parent
SDKS = ("openai", "anthropic")

# A fresh interpreter serving api/chat.py as Vercel would (the function's own app, nothing imported before):
# two turns over HTTP, then which SDKs this process, the one that served them, has in sys.modules.
INSTANCE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from scripts._serve import serve_in_thread
import api.chat
import httpx

sdks = ("openai", "anthropic")
url, stop = serve_in_thread(api.chat.app)
report = {"at_import": [n for n in sdks if n in sys.modules], "turns": []}
for message in ("Refunds?", "And exchanges?"):
    reply = httpx.post(url + "/api/chat", json={"assistant_id": sys.argv[2], "message": message, "stream": False},
                       headers={"Authorization": "Bearer " + sys.argv[3]}, timeout=60)
    report["turns"].append({"provider": reply.json().get("provider"), "loaded": [n for n in sdks if n in sys.modules]})
stop()
print(json.dumps(report))
"""


def test_a_fresh_instance_serves_a_turn_and_a_failover_without_the_sdks(engine: Any, openai_api: Any,
                                                                        anthropic_api: Any) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, retrieval={"mode": "hybrid"})
    openai_api.fail(503)  # the instance's first turn fails over to Anthropic; its second OpenAI answers
    done = subprocess.run([sys.executable, "-c", INSTANCE, str(ROOT), assistant, key], capture_output=True,
                          text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert [t["provider"] for t in report["turns"]] == ["anthropic", "openai"]
    assert len(anthropic_api.requests) == 1 and openai_api.embedding_attempts >= 1  # the query was embedded too
    assert report["at_import"] == [] and [t["loaded"] for t in report["turns"]] == [[], []], (
        "a chat turn imported a model SDK: a fresh instance's first turn (or first failover) waits for it")
