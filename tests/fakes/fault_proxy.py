"""A TCP fault proxy: put it in front of a service (the Upstash REST stand-in, PostgreSQL, ...) and switch it.

Modes: `pass` (bytes flow both ways), `refuse` (new and open connections are closed at once: a service
that is down) and `blackhole` (connections stay open, nothing is forwarded or answered: a stalled or
firewalled service, the case that hangs clients without a timeout). The mode applies to open
connections too, so a client's keep-alive pool can't step around it. `requests_seen` counts HTTP
requests (chunks starting with a method) the proxy received while not passing them on.
"""

from __future__ import annotations

import socket
import threading
from typing import Literal

Mode = Literal["pass", "refuse", "blackhole"]
METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"PATCH ")


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "pass"
        self.requests_seen = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="fault-proxy").start()

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "refuse":
            self._close_all()

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._close_all()

    def _close_all(self) -> None:
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            self._track(upstream)
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
            self._pump(client, upstream, True)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    sock.close()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self.mode != "pass":
                    if from_client and data.startswith(METHODS):
                        with self._lock:
                            self.requests_seen += 1
                    if self.mode == "refuse":
                        break
                    continue  # blackhole: swallow it, answer nothing
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass
