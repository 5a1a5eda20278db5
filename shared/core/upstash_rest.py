"""Upstash Redis over its REST API: the few commands shared.core.kv uses, on one httpx client.

The wire is small (PROTOCOLS.md §2): `POST <url>` with a command as a JSON array, `POST <url>/pipeline`
with a list of them; replies `{"result": ...}` or `{"error": "..."}`. We speak it ourselves rather than
through upstash-redis because that SDK's client has no timeout option (it waits forever; kv reached
into its insides to bound it) and makes its own httpx client and TLS context, which cost a fresh
instance's first turn ~30 ms of CPU beside the one the model clients share (shared.core.tls).
Replies come as plain JSON strings (no `Upstash-Encoding: base64`): every value we store is text.
No retries here: kv's breaker, not a retry, handles an outage.
"""

from __future__ import annotations

from typing import Any

import httpx

from shared.core.tls import tls_context


class UpstashCommandError(Exception):
    """Redis refused a command (`{"error": "ERR ..."}`): a bug in the command, not an outage."""


class UpstashTransportError(Exception):
    """The REST endpoint did not answer with a reply we can read (status, body or connection)."""


class UpstashRest:
    """The redis-py methods kv calls (get, set, incrby, delete, ping, scan), plus `pipeline(commands)`."""

    def __init__(self, url: str, token: str, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s,
                                  verify=tls_context())
        self._sync_token: str | None = None

    def command(self, *args: Any) -> Any:
        return _result(self._post(self.url, list(args)))

    def pipeline(self, commands: list[list[Any]]) -> list[Any]:
        """Several commands in one round trip (not atomic); the first refused command raises."""
        replies = self._post(f"{self.url}/pipeline", [list(c) for c in commands])
        if not isinstance(replies, list) or len(replies) != len(commands):
            raise UpstashTransportError("pipeline reply does not match its commands")
        return [_result(reply) for reply in replies]

    def get(self, key: str) -> str | None:
        return self.command("GET", key)

    def set(self, key: str, value: str, ex: int | None = None) -> Any:
        return self.command("SET", key, value, "EX", ex) if ex else self.command("SET", key, value)

    def incrby(self, key: str, amount: int) -> int:
        return self.command("INCRBY", key, amount)

    def delete(self, *keys: str) -> int:
        return self.command("DEL", *keys)

    def ping(self) -> bool:
        return self.command("PING") == "PONG"

    def scan(self, cursor: int | str, match: str, count: int) -> tuple[int, list[str]]:
        next_cursor, keys = self.command("SCAN", cursor, "MATCH", match, "COUNT", count)
        return int(next_cursor), keys

    def close(self) -> None:
        self._http.close()

    def _post(self, url: str, body: Any) -> Any:
        # Upstash's global databases read from replicas: echoing the last sync token reads our own writes.
        headers = {"Upstash-Sync-Token": self._sync_token} if self._sync_token else None
        try:
            reply = self._http.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise UpstashTransportError(type(exc).__name__) from exc
        if token := reply.headers.get("upstash-sync-token"):
            self._sync_token = token
        if reply.status_code not in (200, 400):  # 401 (token), 405, a proxy's 5xx: not Redis answering
            raise UpstashTransportError(f"HTTP {reply.status_code}")
        try:
            return reply.json()
        except ValueError as exc:
            raise UpstashTransportError(f"HTTP {reply.status_code} without a JSON reply") from exc


def _result(reply: Any) -> Any:
    if isinstance(reply, dict) and "error" in reply:
        raise UpstashCommandError(str(reply["error"]))
    if not isinstance(reply, dict) or "result" not in reply:
        raise UpstashTransportError("reply without a result")
    return reply["result"]
