"""What the benches share: the local stack in a temporary folder, servers in fresh interpreters (stopped however
the bench ends), the chat stand-ins and the settings that point the engine at them, percentiles, the question
sets of bench/corpora and ingesting a corpus through the API.

Only bench/ imports this. The project's modules and the heavy packages are imported inside the functions, so a
bench pays only for what it uses (and bench/ingest.py --code-root can serve another checkout's engine).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "bench" / "corpora"
STEMMERS = {"en": "english", "de": "german"}  # a corpus's language code -> the name a source and Snowball take

# -- the local stack -------------------------------------------------------------------------------------------


@contextmanager
def temporary_folder(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A new folder under the system's temporary one, removed on exit unless `keep`."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)  # as root, pgserver's own user must reach it
    try:
        yield folder
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def local_stack(prefix: str, keep: bool = False, **options: Any) -> Iterator[Any]:
    """scripts/local_stack.py's LocalStack (PostgreSQL + pgvector, Redis, the Upstash and QStash stand-ins) in a
    temporary folder, its environment in os.environ; stopped (a partial start too) and the folder removed on exit.
    `options` go to LocalStack (qstash_backoff_scale=...)."""
    from scripts.local_stack import LocalStack

    with temporary_folder(prefix, keep) as folder:
        stack = LocalStack(folder, **options)
        try:
            os.environ.update(stack.start())
            yield stack
        finally:
            stack.stop()


def embeddings_api_named() -> bool:
    """True when the environment names an embeddings API (OPENAI_API_KEY or EMBEDDING_BASE_URL): it wins over the
    local stack's model (stack.embeddings_env())."""
    return any(os.environ.get(k) for k in ("OPENAI_API_KEY", "EMBEDDING_BASE_URL"))


def create_database(stack: Any, name: str) -> str:
    """CREATE DATABASE `name` on the stack's server, migrated and set as DATABASE_URL; returns its URL."""
    import psycopg

    from shared.core.settings import get_settings
    from shared.ops.migrate import migrate

    with psycopg.connect(stack.pg.get_uri(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url: str = stack.pg.get_uri(name)
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()  # settings follow the environment as it is now (migrate reads them)
    migrate(url)
    return url


@contextmanager
def engine_in_thread() -> Iterator[str]:
    """The whole API router (`make dev`'s) served in a thread of this process, as PUBLIC_URL so the QStash
    stand-in delivers jobs to it; yields its URL."""
    from scripts._serve import serve_in_thread
    from scripts.router import create_router
    from shared.core.settings import get_settings

    url, stop = serve_in_thread(create_router())
    try:
        os.environ["PUBLIC_URL"] = url
        get_settings.cache_clear()
        yield url
    finally:
        stop()


# -- servers in fresh interpreters -------------------------------------------------------------------------------

SERVE = """
import os, signal, sys, time
if os.environ.get("BENCH_CPU_FILE"):  # SIGUSR1: write this process's CPU seconds, all threads, ended ones too
    def _cpu(*_):
        with open(os.environ["BENCH_CPU_FILE"] + ".tmp", "w") as out:
            out.write(repr(time.process_time()))
        os.replace(os.environ["BENCH_CPU_FILE"] + ".tmp", os.environ["BENCH_CPU_FILE"])
    signal.signal(signal.SIGUSR1, _cpu)
sys.path.insert(0, {path!r})
for name in {blocked!r}:
    sys.modules.setdefault(name, None)  # `import name` raises ImportError, as where it is not installed
import uvicorn
from {module} import {name} as served
uvicorn.run(served{call}, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""
_STARTED: list[subprocess.Popen[bytes]] = []


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_app(module: str, name: str, factory: bool = False, env: dict[str, str] | None = None,
              path: Path = ROOT, blocked: list[str] | tuple[str, ...] = (), poll_s: float = 0.1,
              port: int | None = None) -> tuple[str, subprocess.Popen[bytes]]:
    """`module`'s `name` (an ASGI app, or with `factory` a function making one) under uvicorn in a fresh
    interpreter, `path` first on its sys.path and its working folder, `blocked` modules not importable, on `port`
    (default: a free one); returns (its URL, the process) once it accepts connections. No request is sent before
    the caller's: nothing is warmed up by the wait."""
    port = port or free_port()
    code = SERVE.format(path=str(path), blocked=list(blocked), module=module, name=name,
                        call="()" if factory else "", port=port)
    process = spawn_server(code, port, env=env, cwd=path, poll_s=poll_s, what=module)
    return f"http://127.0.0.1:{port}", process


def spawn_server(code: str, port: int, env: dict[str, str] | None = None, cwd: Path | None = None,
                 poll_s: float = 0.1, timeout_s: float = 120.0, what: str = "the server") -> subprocess.Popen[bytes]:
    """Run `code` (which serves on `port`) in a fresh interpreter; return once the port accepts connections.
    The process is stopped when this interpreter exits, should the bench fail before stopping it: an orphan keeps
    the bench's output pipe open, so a failed bench would look hung."""
    process = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=cwd)
    _STARTED.append(process)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode} before serving")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(poll_s)
    stop_process(process)
    raise SystemExit(f"{what} did not start within {timeout_s:.0f} s")


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`: on a loaded machine a server still importing an SDK is slow to exit."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@atexit.register
def _stop_started_servers() -> None:
    for process in _STARTED:
        stop_process(process)


# -- the chat stand-ins ------------------------------------------------------------------------------------------


def instant_model(on_request: Callable[[Any, dict[str, Any]], None] | None = None) -> Any:
    """tests/fakes' OpenAI chat stand-in answering "OK." at once, in one chunk; `on_request(request, body)` runs
    as each chat request arrives, before it is answered."""
    from tests.fakes.openai_server import FakeOpenAI

    model = FakeOpenAI()
    model.reply, model.chunk_chars = "OK.", 100
    if on_request is not None:
        answer = model.next_step

        def noted(request: Any, body: dict[str, Any]) -> Any:
            on_request(request, body)
            return answer(request, body)

        model.next_step = noted  # type: ignore[method-assign]
    return model


def use_chat_stand_ins(api_key: str, model_url: str, embeddings_url: str) -> None:
    """Point the engine (this process, and servers started after) at an OpenAI chat stand-in and an embeddings
    stand-in (base URLs ending in /v1), vectors in pgvector; the rate limits and the daily token budget are still
    read and counted every turn, but out of reach: many turns a second from one key are the point of a bench."""
    from shared.core.settings import get_settings

    os.environ.update({"OPENAI_API_KEY": api_key, "OPENAI_BASE_URL": model_url,
                       "EMBEDDING_BASE_URL": embeddings_url, "VECTOR_BACKEND": "pgvector",
                       "RATE_CHAT_PER_KEY_PER_MINUTE": "1000000", "RATE_CHAT_PER_USER_PER_MINUTE": "1000000",
                       "DAILY_TOKEN_BUDGET": str(10**12)})
    get_settings.cache_clear()


def chat_stand_ins_in_threads(embeddings_app: Any, on_request: Callable[[Any, dict[str, Any]], None] | None = None
                              ) -> tuple[Any, dict[str, str]]:
    """The instant model (`on_request` as there) and `embeddings_app` served in threads of this process, the engine
    pointed at them (use_chat_stand_ins); returns (the model, {"model": its base URL, "embed": the embeddings'})."""
    from scripts._serve import serve_in_thread

    model = instant_model(on_request)
    model_url, _ = serve_in_thread(model.app)
    embed_url, _ = serve_in_thread(embeddings_app)
    urls = {"model": f"{model_url}/v1", "embed": f"{embed_url}/v1"}
    use_chat_stand_ins(model.api_key, urls["model"], urls["embed"])
    return model, urls


def first_event(client: Any, path: str, body: dict[str, Any]) -> tuple[float, list[str]]:
    """(seconds to the first `delta` event, all lines) for one streamed POST."""
    started = time.perf_counter()
    first, lines = None, []
    with client.stream("POST", path, json=body) as reply:
        assert reply.status_code == 200, reply.read()
        for line in reply.iter_lines():
            if first is None and line.startswith("event: delta"):
                first = time.perf_counter() - started
            lines.append(line)
    assert first is not None, lines
    return first, lines


# -- figures -----------------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`: the nearest sample by rank, no interpolation."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def columns(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """Rows of named figures as one list per name."""
    return {key: [row[key] for row in rows] for key in rows[0]}


# -- question sets and corpora -------------------------------------------------------------------------------------


def load_questions(name: str, file: str = "questions.jsonl") -> list[dict[str, Any]]:
    """bench/corpora/<name>/<file>, one JSON object a line; [] when the set has no such file."""
    path = QUESTIONS / name / file
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ingest_corpus(engine_url: str, key: str, assistant_id: str, name: str, base: str) -> dict[str, Any]:
    """tests/corpora's `name`, served at `base`, ingested as a `site` source through the engine's API (crawl,
    extraction, chunking, embeddings); returns the source once it is ready or failed."""
    from tests import corpora

    return ingest(engine_url, key, assistant_id, f"{base}/{corpora.START_PAGE}", len(corpora.pages(name)) + 50,
                  STEMMERS[corpora.LANGUAGE[name]])


def ingest(engine_url: str, key: str, assistant_id: str, start_url: str, limit: int, language: str) -> dict[str, Any]:
    """A `site` source from `start_url` through the engine's API; returns it once it is ready or failed."""
    import httpx

    with httpx.Client(base_url=engine_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        reply = client.post("/api/sources", json={"assistant_id": assistant_id, "kind": "site", "url": start_url,
                                                  "limit": limit, "language": language})
        reply.raise_for_status()
        source_id = reply.json()["id"]
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            source: dict[str, Any] = client.get(f"/api/sources/{source_id}").json()
            if source["status"] in ("ready", "failed"):
                return source
            time.sleep(0.5)
    raise TimeoutError(f"{start_url} did not finish ingesting")
