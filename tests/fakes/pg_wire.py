"""A PostgreSQL wire-protocol proxy that counts what clients send: connections (= new backends) and
statements, with their text, read from the frontend messages (Query, Parse/Bind/Execute).

Counted on the wire, not in our code: what a test asserts is what the database really received.
pgserver's PostgreSQL listens on a Unix socket; the proxy listens on 127.0.0.1 (tcp_proxy.postgres_target).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

from tests.fakes.tcp_proxy import postgres_target

UNTYPED_REQUESTS = {80877103, 80877104, 80877102}  # SSLRequest, GSSENCRequest, CancelRequest


@dataclass
class Statement:
    connection: int  # which accepted connection ran it (1, 2, ...)
    sql: str
    at: float


class PgWireCounter:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.target = postgres_target(dsn)
        self.connections = 0
        self.statements: list[Statement] = []
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="pg-wire-counter", daemon=True).start()

    @property
    def url(self) -> str:
        """The same database, through this proxy (no TLS, as on the Unix socket)."""
        parts = urlsplit(self.dsn)
        query = {k: v[0] for k, v in parse_qs(parts.query).items() if k != "host"}
        query["sslmode"] = "disable"
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit((parts.scheme, f"{user}127.0.0.1:{self.port}", parts.path, urlencode(query), ""))

    def sql(self, since: int = 0, *, metrics: bool = False) -> list[str]:
        """Statement texts from index `since` on; metrics=False leaves out the metrics writes."""
        with self._lock:
            texts = [s.sql for s in self.statements[since:]]
        return [t for t in texts if metrics or "performance_metrics" not in t]

    def mark(self) -> tuple[int, int]:
        """(statements, connections) so far: pass to sql(since=...) and compare connections."""
        with self._lock:
            return len(self.statements), self.connections

    def wait_for(self, fragment: str, since: int = 0, timeout: float = 10.0) -> None:
        """Block until a statement containing `fragment` arrived after `since`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(fragment in text for text in self.sql(since, metrics=True)):
                return
            time.sleep(0.01)
        raise TimeoutError(f"no statement with {fragment!r} arrived")

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX if isinstance(self.target, str) else socket.AF_INET)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                number = self.connections
                self._open += [client, upstream]
            threading.Thread(target=self._from_client, args=(client, upstream, number), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _from_client(self, client: socket.socket, upstream: socket.socket, number: int) -> None:
        buffer, typed = b"", False
        prepared: dict[str, str] = {}   # statement name -> text (Parse)
        portals: dict[str, str] = {}    # portal name -> text (Bind)
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                upstream.sendall(data)
                buffer += data
                while True:
                    if not typed:
                        if len(buffer) < 8:
                            break
                        (length,) = struct.unpack("!I", buffer[:4])
                        if len(buffer) < length:
                            break
                        (code,) = struct.unpack("!I", buffer[4:8])
                        buffer = buffer[length:]
                        typed = code not in UNTYPED_REQUESTS  # the startup message: typed messages follow
                        continue
                    if len(buffer) < 5:
                        break
                    kind = buffer[:1]
                    (length,) = struct.unpack("!I", buffer[1:5])
                    if len(buffer) < 1 + length:
                        break
                    body, buffer = buffer[5:1 + length], buffer[1 + length:]
                    self._message(number, kind, body, prepared, portals)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _message(self, number: int, kind: bytes, body: bytes, prepared: dict[str, str],
                 portals: dict[str, str]) -> None:
        if kind == b"Q":
            self._record(number, body.rstrip(b"\0").decode(errors="replace"))
        elif kind == b"P":
            name, rest = body.split(b"\0", 1)
            prepared[name.decode()] = rest.split(b"\0", 1)[0].decode(errors="replace")
        elif kind == b"B":
            portal, rest = body.split(b"\0", 1)
            statement = rest.split(b"\0", 1)[0].decode()
            portals[portal.decode()] = prepared.get(statement, "")
        elif kind == b"E":
            portal = body.split(b"\0", 1)[0].decode()
            self._record(number, portals.get(portal, ""))

    def _record(self, number: int, sql: str) -> None:
        with self._lock:
            self.statements.append(Statement(number, " ".join(sql.split()), time.monotonic()))


@pytest.fixture
def pg_wire(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgWireCounter]:
    """The engine's database through a PgWireCounter (import it: `from tests.fakes.pg_wire import pg_wire`)."""
    from shared.core import metrics

    metrics.flush(wait=True)  # nothing of earlier tests written through the proxy
    counter = PgWireCounter(engine.dsn)
    monkeypatch.setenv("DATABASE_URL", counter.url)
    _clear_caches()
    try:
        yield counter
    finally:
        metrics.flush(wait=True)
        counter.close()


def _clear_caches() -> None:
    conftest = sys.modules.get("conftest") or sys.modules.get("tests.conftest")
    assert conftest is not None
    conftest.clear_caches()
