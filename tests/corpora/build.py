"""Rebuild tests/corpora/<name>.tar.xz from Debian documentation packages (a maintainer tool; the tests
only read the committed archives). Needs `apt-get download` and `dpkg-deb`, so a machine with Debian's
archive; run `python -m tests.corpora.build [name ...]`.

Each set keeps the HTML pages reachable from its start page by links (breadth first, up to a cap), so a
crawler started at the root finds every kept page; images, CSS, scripts and fonts are left out."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
import tempfile
from collections import deque
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).parent
# name: (package, directory inside the package, start page, page cap)
SETS = {
    "flask": ("python-flask-doc", "usr/share/doc/python-flask-doc/html", "index.html", 300),
    "gettext": ("gettext-doc", "usr/share/doc/gettext", "index.html", 300),
    "debian-handbook": ("debian-handbook", "usr/share/doc/debian-handbook/html/en-US", "index.html", 300),
    "gimp-de": ("gimp-help-de", "usr/share/gimp/2.0/help/de", "index.html", 220),
    # Layout checks only (tests/test_real_sites.py), no benchmark questions:
    "mkdocs": ("mkdocs-doc", "usr/share/doc/mkdocs/html", "index.html", 300),
    "jsoncpp": ("libjsoncpp-doc", "usr/share/doc/libjsoncpp-doc", "index.html", 60),
}
HREF = re.compile(rb"""href\s*=\s*["']([^"'#?]+)""", re.IGNORECASE)


def reachable(root: Path, start: str, cap: int) -> list[str]:
    """HTML files under `root` reachable from `start` by relative links, breadth first, at most `cap`."""
    seen, order, queue = {start}, [], deque([start])
    while queue and len(order) < cap:
        page = queue.popleft()
        order.append(page)
        for raw in HREF.findall((root / page).read_bytes()):
            href = unquote(raw.decode("utf-8", "replace")).strip()
            if urlsplit(href).scheme or href.startswith("/") or not href.endswith((".html", ".htm")):
                continue
            target = str(PurePosixPath(page).parent / href)
            parts: list[str] = []
            for part in target.split("/"):
                if part == "..":
                    if parts:
                        parts.pop()
                elif part not in ("", "."):
                    parts.append(part)
            target = "/".join(parts)
            if target not in seen and (root / target).is_file():
                seen.add(target)
                queue.append(target)
    return sorted(order)


def build(name: str, work: Path) -> None:
    package, inner, start, cap = SETS[name]
    subprocess.run(["apt-get", "download", package], cwd=work, check=True, capture_output=True)
    deb = next(work.glob(f"{package}_*.deb"))
    unpacked = work / package
    subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
    root = unpacked / inner
    pages = reachable(root, start, cap)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz", preset=9) as tar:
        for page in pages:
            data = (root / page).read_bytes()
            info = tarfile.TarInfo(page)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    (HERE / f"{name}.tar.xz").write_bytes(buffer.getvalue())
    print(f"{name}: {deb.name}, {len(pages)} pages, {len(buffer.getvalue()):,} bytes")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for wanted in sys.argv[1:] or list(SETS):
            build(wanted, Path(tmp))
