"""One verifying TLS context per process for every HTTPS client we make (models, embeddings, Upstash).

Each httpx client made without `verify=` loads the CA bundle into a context of its own: ~30 ms of CPU
on this machine, paid again by every client a fresh instance's first turn makes. One context is
thread-safe to share, and loading it releases the GIL, so a background thread can make it early
(shared.dialog.warmup).
"""

from __future__ import annotations

import ssl
import threading

_context: ssl.SSLContext | None = None
_lock = threading.Lock()


def tls_context() -> ssl.SSLContext:
    """The process's TLS context (httpx's defaults: certifi's CA bundle, hostname checks), made once."""
    global _context
    with _lock:
        if _context is None:
            import httpx

            _context = httpx.create_ssl_context()
        return _context
