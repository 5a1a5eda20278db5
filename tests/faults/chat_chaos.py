"""Chat turns under random faults, shared by tests/faults/test_chat_faults.py and bench/faults.py.

`run_turns` sends streaming turns from a few client threads while `Chaos` breaks things underneath:
the model stand-ins fail at random (5xx, 529, 429, dropped mid-stream; seeded RNG), Redis (the Upstash
REST endpoint, behind a FaultProxy) refuses or stalls for windows, and PostgreSQL connections of the
engine's database are killed (pg_terminate_backend) while answers stream. `audit` then compares what
clients were told with what the database holds. `Summary.line()` is the figure line both print.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from tests.fakes.fault_proxy import FaultProxy


@dataclass
class TurnResult:
    message: str
    http_status: int = 0
    first_byte_ms: float | None = None
    conversation_id: str | None = None
    user_message_id: str | None = None        # set once the turn was acknowledged (the `conversation` event)
    done: dict[str, Any] | None = None
    error_body: Any = None
    broken: str | None = None                 # the client saw the stream break off (no `done`)


@dataclass
class Summary:
    turns: int = 0
    acknowledged: int = 0
    refused: Counter[str] = field(default_factory=Counter)   # error codes of turns answered with an HTTP error
    statuses: Counter[str] = field(default_factory=Counter)  # done.status of acknowledged turns
    lost: int = 0                 # acknowledged user messages not stored
    duplicated: int = 0           # user messages or replies stored more than once
    unfinished: int = 0           # acknowledged turns without a `done` or without a stored/flagged reply
    reasonless: int = 0           # partial/failed replies stored without a reason
    store_failed: int = 0         # done said stored=false (the client kept the text)
    bare_5xx: int = 0
    failovers: int = 0
    first_byte_ms: list[float] = field(default_factory=list)
    chaos: Counter[str] = field(default_factory=Counter)

    def percentile(self, q: float) -> float:
        if not self.first_byte_ms:
            return 0.0
        ordered = sorted(self.first_byte_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        return (f"chat faults: turns={self.turns} acknowledged={self.acknowledged} lost={self.lost} "
                f"duplicated={self.duplicated} unfinished={self.unfinished} reasonless={self.reasonless} "
                f"store_failed={self.store_failed} bare_5xx={self.bare_5xx} failovers={self.failovers} "
                f"first_byte_p50_ms={statistics.median(self.first_byte_ms or [0]):.0f} "
                f"first_byte_p99_ms={self.percentile(0.99):.0f} statuses={dict(self.statuses)} "
                f"refused={dict(self.refused)} chaos={dict(self.chaos)}")


class Chaos:
    """Redis windows and PostgreSQL kills on a background thread, from a seeded RNG."""

    def __init__(self, seed: int, redis_proxy: FaultProxy | None, admin_dsn: str | None, engine_dsn: str | None,
                 redis_every_s: float = 1.5, kill_every_s: float = 0.7) -> None:
        self.random = random.Random(seed)
        self.redis_proxy, self.admin_dsn = redis_proxy, admin_dsn
        self.database = conninfo_to_dict(engine_dsn)["dbname"] if engine_dsn else None
        self.redis_every_s, self.kill_every_s = redis_every_s, kill_every_s
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos")

    def __enter__(self) -> Chaos:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)
        if self.redis_proxy is not None:
            self.redis_proxy.set_mode("pass")

    def _run(self) -> None:
        next_redis = time.monotonic() + self.random.uniform(0.2, self.redis_every_s)
        next_kill = time.monotonic() + self.random.uniform(0.1, self.kill_every_s)
        redis_back_at = None
        while not self._stop.wait(0.05):
            now = time.monotonic()
            if self.redis_proxy is not None:
                if redis_back_at is not None and now >= redis_back_at:
                    self.redis_proxy.set_mode("pass")
                    redis_back_at = None
                    next_redis = now + self.random.uniform(0.5, self.redis_every_s)
                elif redis_back_at is None and now >= next_redis:
                    mode = self.random.choice(["refuse", "blackhole"])
                    self.redis_proxy.set_mode(mode)
                    self.counts[f"redis_{mode}"] += 1
                    redis_back_at = now + self.random.uniform(0.3, 1.2)
            if self.admin_dsn and self.database and now >= next_kill:
                self.counts["pg_killed"] += kill_backends(self.admin_dsn, self.database)
                next_kill = now + self.random.uniform(0.2, self.kill_every_s)


def kill_backends(admin_dsn: str, database: str) -> int:
    """pg_terminate_backend for every client connection to `database`; returns how many."""
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as admin:
            rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                                 "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                                 (database,)).fetchall()
        return len(rows)
    except psycopg.Error:
        return 0


def one_turn(client: httpx.Client, assistant_id: str, conversation_id: str | None) -> TurnResult:
    result = TurnResult(message=f"Question {uuid.uuid4().hex[:12]}: what do you know?")
    body: dict[str, Any] = {"assistant_id": assistant_id, "message": result.message}
    if conversation_id:
        body["conversation_id"] = conversation_id
    started = time.perf_counter()
    try:
        with client.stream("POST", "/api/chat", json=body) as reply:
            result.http_status = reply.status_code
            if reply.status_code != 200:
                raw = reply.read()
                result.first_byte_ms = (time.perf_counter() - started) * 1000
                try:
                    result.error_body = json.loads(raw)
                except ValueError:
                    result.error_body = raw[:200]
                return result
            name = None
            for line in reply.iter_lines():
                if result.first_byte_ms is None:
                    result.first_byte_ms = (time.perf_counter() - started) * 1000
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if name == "conversation":
                        result.conversation_id = data["conversation_id"]
                        result.user_message_id = data["user_message_id"]
                    elif name == "done":
                        result.done = data
    except httpx.HTTPError as exc:
        result.broken = type(exc).__name__
    return result


def run_turns(base_url: str, key: str, assistant_id: str, turns: int, workers: int, seed: int) -> list[TurnResult]:
    """`turns` streaming turns from `workers` threads; a worker continues its conversation most of the time."""
    results: list[TurnResult] = []
    lock = threading.Lock()
    counter = iter(range(turns))

    def work(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        conversation: str | None = None
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                result = one_turn(client, assistant_id, conversation if rng.random() < 0.7 else None)
                conversation = result.conversation_id or conversation
                with lock:
                    results.append(result)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def audit(results: list[TurnResult], dsn: str, chaos: Counter[str] | None = None) -> Summary:
    """What clients were told against what the database holds."""
    summary = Summary(turns=len(results), chaos=chaos or Counter())
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        for result in results:
            if result.first_byte_ms is not None:
                summary.first_byte_ms.append(result.first_byte_ms)
            if result.http_status >= 500 and not _is_json_error(result.error_body):
                summary.bare_5xx += 1
            if result.user_message_id is None:
                if result.http_status != 200:
                    summary.refused[_error_code(result.error_body)] += 1
                continue
            summary.acknowledged += 1
            users = conn.execute("SELECT id FROM messages WHERE conversation_id = %s AND role = 'user' "
                                 "AND content = %s", (result.conversation_id, result.message)).fetchall()
            summary.lost += len(users) == 0
            summary.duplicated += max(0, len(users) - 1)
            done = result.done
            if done is None:
                summary.unfinished += 1
                continue
            summary.statuses[done["status"]] += 1
            summary.failovers += bool(done.get("failover"))
            if not done.get("stored", True):
                summary.store_failed += 1
                continue
            reply = conn.execute("SELECT status, error FROM messages WHERE id = %s", (done["message_id"],)).fetchone()
            if reply is None or reply["status"] != done["status"]:
                summary.unfinished += 1
            elif reply["status"] != "complete" and not reply["error"]:
                summary.reasonless += 1
        # A reply stored twice would show as two assistant rows after one user message.
        twice = conn.execute("""
            SELECT count(*) AS n FROM (
                SELECT m.id, (SELECT count(*) FROM messages a WHERE a.conversation_id = m.conversation_id
                              AND a.role = 'assistant' AND a.seq > m.seq
                              AND a.seq < coalesce((SELECT min(n.seq) FROM messages n WHERE n.conversation_id =
                                  m.conversation_id AND n.role = 'user' AND n.seq > m.seq), 9223372036854775807)
                             ) AS replies
                FROM messages m WHERE m.role = 'user') per_turn
            WHERE replies > 1""").fetchone()
        summary.duplicated += int(twice["n"])
    return summary


def _is_json_error(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("error"), dict) and "code" in body["error"]


def _error_code(body: Any) -> str:
    return str(body["error"]["code"]) if _is_json_error(body) else "not_json"


def concurrent_turns(base_url: str, key: str, assistant_id: str, count: int) -> list[TurnResult]:
    """`count` streaming turns started at once (one thread each), released together by a barrier."""
    barrier = threading.Barrier(count)
    results: list[TurnResult] = [TurnResult(message="") for _ in range(count)]

    def work(n: int) -> None:
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
            barrier.wait()
            results[n] = one_turn(client, assistant_id, None)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results

