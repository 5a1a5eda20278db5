"""Schemathesis against every function's OpenAPI schema, through the served router with a valid admin key:
no 5xx, and every response matches the model its operation declares (our error shape for every 4xx).

`make fuzz` runs it (`make test` leaves it out; .ci/run runs both). Bounded: FUZZ_EXAMPLES (default 20)
generated cases per operation on top of schemathesis's example and coverage cases, the same ones every run
unless FUZZ_RANDOM=1.
FUZZ_ONLY=chat,sources picks functions; FUZZ_LOG=file writes one line per request.
"""

from __future__ import annotations

import copy
import importlib
import itertools
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from scripts.router import function_names
from tests.fakes.records import Records, seed
from tests.plugins.stack import TEMPLATE_DB, Engine, clear_caches

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
RANDOM = os.environ.get("FUZZ_RANDOM") == "1"
LOG = os.environ.get("FUZZ_LOG")  # a file: one line per request [method, path, status, error code, body]

# Where a seeded record's id may go: path and query parameters and top-level body fields of these names.
# Half the generated cases get the real ids there (see real_ids), so routes run past "not found" too.
REAL_IDS = {"assistant_id": "assistant_id", "template_id": "template_id", "source_id": "source_id",
            "conversation_id": "conversation_id", "chat_id": "conversation_id", "key_id": "chat_key_id",
            "model_id": "assistant_id", "message_id": "message_id", "model": "assistant_id", "id": "conversation_id"}
NO_REAL_ID_IN = {"/api/jobs/{name}", "/api/cron/{name}"}
CURRENT: list[Records] = []  # the records of the database the running operation talks to



def _chat_body_schema(spec: dict[str, Any]) -> None:
    """api/chat.py reads its body itself and declares none: describe its two bodies so they are fuzzed too."""
    from api.chat import ChatRequest, UIChatRequest

    operation = spec["paths"]["/api/chat"]["post"]
    if "requestBody" in operation:
        return
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    one_of = []
    for model in (ChatRequest, UIChatRequest):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
        one_of.append({"$ref": f"#/components/schemas/{model.__name__}"})
    operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"oneOf": one_of}}}}


def prepared_schema(app: Any) -> dict[str, Any]:
    spec = copy.deepcopy(app.openapi())
    if "/api/chat" in spec["paths"]:
        _chat_body_schema(spec)
    return spec


ONLY = [n for n in os.environ.get("FUZZ_ONLY", "").split(",") if n]  # e.g. FUZZ_ONLY=chat,sources
SCHEMAS = {name: schemathesis.openapi.from_dict(prepared_schema(importlib.import_module(f"api.{name}").app))
           for name in function_names() if not ONLY or name in ONLY}
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def seeded(stack: Any) -> Iterator[tuple[str, Records]]:
    """One database with a seeded workspace, made once through the API; each operation gets a copy of it."""
    name = f"fuzz_seed_{os.getpid()}"
    with psycopg.connect(stack.admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = stack.dsn(name)
    stack.local.redis.flushdb()
    clear_caches()
    engine = Engine(stack, stack.dsn(name))
    try:
        records = seed(engine, "Fuzz")
        from shared.core import metrics

        metrics.flush(wait=True)
    finally:
        engine.close()
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved
        clear_caches()
    try:
        yield name, records
    finally:
        with psycopg.connect(stack.admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def target(stack: Any, seeded: tuple[str, Records], monkeypatch: pytest.MonkeyPatch) -> Iterator[Records]:
    """A fresh copy of the seeded database for one operation (its deletes must not starve the next one)."""
    template, records = seeded
    name = f"fuzz_{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(stack.admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    monkeypatch.setenv("DATABASE_URL", stack.dsn(name))
    monkeypatch.setenv("PUBLIC_URL", stack.server_url)
    stack.local.redis.flushdb()
    clear_caches()
    # Jobs the previous operation queued (resyncs, summaries) would run against this copy: drop them, as conftest does.
    try:
        Engine(stack, stack.dsn(name)).wait_for_queue(timeout=5)
    except TimeoutError:
        pass
    stack.local.queue_redis.flushdb()
    CURRENT.append(records)
    try:
        yield records
    finally:
        CURRENT.clear()
        monkeypatch.undo()
        clear_caches()
        with psycopg.connect(stack.admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _grammar() -> dict[str, Any]:
    """Strategies for query strings our routes parse themselves (the schema says only "string"), so the fuzzer
    also sends values that get past the first check: forged cursors, huge durations, far-off times."""
    from hypothesis import strategies as st

    from shared.core.pagination import encode_cursor

    scalar = st.one_of(st.text(max_size=30), st.integers(-(2**70), 2**70), st.booleans(), st.none(),
                       st.floats(allow_nan=False, allow_infinity=False))
    amount = st.one_of(st.integers(0, 10**20), st.floats(0, 1e20)).map(str)
    duration = st.tuples(amount, st.sampled_from("smhdw")).map("".join)
    zones = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))])
    moment = st.datetimes(timezones=st.one_of(st.none(), zones)).map(datetime.isoformat)
    when = st.one_of(duration.map(lambda d: f"-{d}"), moment, st.just("now"))
    return {"cursor": st.lists(scalar, max_size=3).map(lambda values: encode_cursor(*values)),
            "start": when, "end": when, "bucket": duration}


GRAMMAR = _grammar()


def real_ids(context: Any, case: Any) -> Any:
    """A flatmap_case hook: the case as generated, or (as often) with the seeded records' ids in it, and some
    self-parsed query strings drawn from their grammar."""
    from hypothesis import strategies as st

    def fill_in(drawn: tuple[bool, dict[str, str]]) -> Any:
        real, grammar = drawn
        if real and CURRENT and case.operation.path not in NO_REAL_ID_IN:
            records = CURRENT[-1]
            for container in (case.path_parameters, case.query, case.body if isinstance(case.body, dict) else None):
                for key in list(container or {}):
                    if key in REAL_IDS:
                        container[key] = getattr(records, REAL_IDS[key])
        for key, value in grammar.items():
            if case.query is not None and key in case.query:
                case.query[key] = value
        return case

    return st.tuples(st.booleans(), st.fixed_dictionaries({}, optional=GRAMMAR)).map(fill_in)


for _schema in SCHEMAS.values():
    _schema.hook("flatmap_case")(real_ids)


@schemathesis.pytest.parametrize(**SCHEMAS)
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_their_schema(case: Any, stack: Any, target: Records) -> None:
    response = case.call(base_url=stack.server_url, headers={"Authorization": f"Bearer {target.admin_key}"},
                         timeout=30)
    if LOG:
        try:
            code = response.json()["error"]["code"]
        except Exception:  # not our error shape: a success, a stream, or the OpenAI face's errors
            code = None
        with open(LOG, "a") as log:
            log.write(json.dumps([case.method, case.path, response.status_code, code, repr(case.body)[:300]]) + "\n")
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
