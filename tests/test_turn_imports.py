"""A fresh instance's chat turns never import the model SDKs: the providers and the query embedding speak
HTTP themselves, so neither the first turn nor the instance's first failover waits for `import openai`
(about a whole function's import) or `import anthropic` (three times that). And every HTTPS client a turn
makes (Upstash, the query embedding, both providers) shares one TLS context: loading the CA bundle costs
~30 ms of CPU, once per instance rather than once per client. Started as Vercel starts it (the ASGI lifespan),
an instance warms up in the background (shared.dialog.warmup): its first turn then imports nothing and opens
no database connection of its own."""

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


# The same instance, counting CA bundle loads (each a new TLS context) from the first turn on; the client
# sending the turns is made before counting starts.
TLS_INSTANCE = """
import json, ssl, sys
sys.path.insert(0, sys.argv[1])
from scripts._serve import serve_in_thread
import api.chat
import httpx

client = httpx.Client(timeout=60, headers={"Authorization": "Bearer " + sys.argv[3]})
loads = []
for name in ("load_verify_locations", "load_default_certs"):
    def counted(self, *args, _original=getattr(ssl.SSLContext, name), **kwargs):
        loads.append(1)
        return _original(self, *args, **kwargs)
    setattr(ssl.SSLContext, name, counted)
url, stop = serve_in_thread(api.chat.app)
providers = []
for message in ("Refunds?", "And exchanges?"):
    reply = client.post(url + "/api/chat", json={"assistant_id": sys.argv[2], "message": message, "stream": False})
    providers.append(reply.json().get("provider"))
stop()
print(json.dumps({"providers": providers, "ca_loads": len(loads)}))
"""


def test_a_fresh_instance_loads_the_ca_bundle_once_for_redis_embeddings_and_both_providers(
        engine: Any, openai_api: Any, anthropic_api: Any) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, retrieval={"mode": "hybrid"})
    openai_api.fail(503)  # the first turn fails over to Anthropic: every client a turn can make is made
    done = subprocess.run([sys.executable, "-c", TLS_INSTANCE, str(ROOT), assistant, key], capture_output=True,
                          text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["providers"] == ["anthropic", "openai"] and openai_api.embedding_attempts >= 1
    assert report["ca_loads"] == 1, f"{report['ca_loads']} TLS contexts: each HTTPS client loaded the CA bundle"


# A fresh instance started as Vercel starts it (the ASGI lifespan runs), its warm-up thread left to finish:
# what the first turn still imports is one-time work the warm-up missed, paid inside that turn.
WARM_INSTANCE = """
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from scripts._serve import serve_in_thread
import api.chat
import httpx

client = httpx.Client(timeout=60, headers={"Authorization": "Bearer " + sys.argv[3]})
url, stop = serve_in_thread(api.chat.app)
warming = [t for t in threading.enumerate() if t.name == "turn-warm-up"]
for thread in warming:
    thread.join(60)
from shared.core.db import get_pool

before, opened = set(sys.modules), get_pool().opened
reply = client.post(url + "/api/chat", json={"assistant_id": sys.argv[2], "message": "Refunds?", "stream": False})
stop()
print(json.dumps({"warming": len(warming), "provider": reply.json().get("provider"),
                  "imported": sorted(set(sys.modules) - before), "warm_connections": opened,
                  "turn_connections": get_pool().opened - opened}))
"""


def test_the_instance_warm_up_gets_everything_the_first_turn_needs_ready(engine: Any, openai_api: Any) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, retrieval={"mode": "hybrid"})
    done = subprocess.run([sys.executable, "-c", WARM_INSTANCE, str(ROOT), assistant, key], capture_output=True,
                          text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["warming"] == 1 and report["provider"] == "openai"
    assert report["imported"] == [], "the first turn imported modules the warm-up (shared.dialog.warmup) left out"
    # The warm-up opened the pool's first connection; the turn used it rather than connecting itself.
    assert (report["warm_connections"], report["turn_connections"]) == (1, 0), json.dumps(report)
