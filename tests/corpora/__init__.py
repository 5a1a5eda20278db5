"""Real documentation sets from Debian packages (see SOURCES.md), vendored as tests/corpora/<name>.tar.xz so
tests and the retrieval benchmark need no network.

    extract(name) -> Path            the unpacked tree (cached in the system temp directory)
    with serve(name) as base_url:    the tree on a loopback HTTP server; pages at f"{base_url}/{path}"
    pages(name) -> list[str]         the HTML pages of a set, relative to its root

Pages are served as real servers do: `text/html` with the charset in the header for some sets and only in
the page (meta / XML declaration) for others, so both ways of declaring it are exercised."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).parent
# The charset the server puts in Content-Type per set; None: the header names none, the page must tell.
HEADER_CHARSET: dict[str, str | None] = {"flask": None, "debian-handbook": None, "gettext": "utf-8",
                                         "gimp-de": "utf-8", "mkdocs": "utf-8", "jsoncpp": None}
# The sets of the retrieval benchmark (each has bench/corpora/<name>/questions.jsonl) ...
NAMES = ("flask", "debian-handbook", "gettext", "gimp-de")
# ... and every set, the extra ones only checking layouts (MkDocs, Doxygen) in tests/test_real_sites.py.
ALL = (*NAMES, "mkdocs", "jsoncpp")
LANGUAGE = {"flask": "en", "debian-handbook": "en", "gettext": "en", "gimp-de": "de", "mkdocs": "en",
            "jsoncpp": "en"}
START_PAGE = "index.html"
TYPES = {".html": "text/html", ".htm": "text/html", ".txt": "text/plain"}


def archive(name: str) -> Path:
    if name not in HEADER_CHARSET:
        raise KeyError(f"unknown corpus {name!r}; known: {', '.join(ALL)}")
    return HERE / f"{name}.tar.xz"


def extract(name: str) -> Path:
    """The unpacked tree of set `name`; unpacked once per archive content (the path names its hash)."""
    data = archive(name).read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / "dialog-engine-corpora" / f"{name}-{digest}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        with tarfile.open(archive(name), "r:xz") as tar:
            tar.extractall(staging, filter="data")
        os.replace(staging, target)  # atomic: a parallel run sees the whole tree or none
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def pages(name: str) -> list[str]:
    root = extract(name)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in (".html", ".htm"))


def _handler(root: Path, charset: str | None) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(root), **kwargs)

        def guess_type(self, path) -> str:  # type: ignore[no-untyped-def, override]
            media = TYPES.get(Path(str(path)).suffix.lower(), "application/octet-stream")
            return f"{media}; charset={charset}" if charset and media.startswith("text/") else media

        def list_directory(self, path):  # type: ignore[no-untyped-def]  # no listings, as web servers
            self.send_error(404, "No index page here")
            return None

        def log_message(self, format, *args) -> None:  # type: ignore[no-untyped-def]  # quiet in tests
            pass

    return Handler


@contextmanager
def serve(name: str) -> Iterator[str]:
    """Set `name` on a loopback HTTP server for the duration of the block; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(extract(name), HEADER_CHARSET[name]))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"corpus-{name}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
