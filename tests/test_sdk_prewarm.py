"""A fresh instance's first chat turn starts loading every configured provider's SDK: the failover partner's
is loaded before any failover, so the first failover after a cold start doesn't wait for its import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fakes.chat_fixtures import make_assistant

ROOT = Path(__file__).resolve().parent.parent

# A fresh interpreter serving api/chat.py as Vercel would (the function's own app, nothing imported before),
# one turn over HTTP, then: which SDKs did this instance load, and when.
INSTANCE = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from scripts._serve import serve_in_thread
import api.chat
import httpx

def loaded(name):
    return hasattr(sys.modules.get(name), "__version__")  # set at the end of the package's import

url, stop = serve_in_thread(api.chat.app)
report = {"at_import": [n for n in ("openai", "anthropic") if n in sys.modules]}
reply = httpx.post(url + "/api/chat", json={"assistant_id": sys.argv[2], "message": "Refunds?", "stream": False},
                   headers={"Authorization": "Bearer " + sys.argv[3]}, timeout=60)
report["provider"] = reply.json().get("provider")
deadline = time.monotonic() + 60
while not loaded("anthropic") and time.monotonic() < deadline:
    time.sleep(0.05)
report["after_turn"] = [n for n in ("openai", "anthropic") if loaded(n)]
stop()
print(json.dumps(report))
"""


def test_first_turn_loads_the_failover_partners_sdk(engine: Any, openai_api: Any,
                                                    anthropic_api: Any) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    done = subprocess.run([sys.executable, "-c", INSTANCE, str(ROOT), assistant, key], capture_output=True,
                          text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["at_import"] == [], "an SDK loaded at import: the cold start pays for it on every route"
    assert report["provider"] == "openai"
    assert not anthropic_api.requests, "no failover happened"
    assert report["after_turn"] == ["openai", "anthropic"], (
        "a turn answered by OpenAI must leave Anthropic's SDK loaded too, or the instance's first failover waits "
        "seconds for its import")
