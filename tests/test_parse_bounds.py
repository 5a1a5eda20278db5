"""Hostile files: a .docx zip bomb and a small PDF whose pages share one slow content stream, uploaded and
crawled. Each is refused with a clear 413/422 naming the bound, the parse runs in a child process that is
stopped, and the test process (which serves the API) does not balloon."""

from __future__ import annotations

import io
import resource
import zipfile

import docx
import pytest

from tests.fakes.crawl_fixtures import add_source, knowledge_setup, wait_synced
from tests.plugins.stack import clear_caches

PARAGRAPH = b"<w:p><w:r><w:t>boom</w:t></w:r></w:p>" * 25_000  # ~0.9 MB of Word XML


def zip_bomb_docx(megabytes: int) -> bytes:
    """A valid .docx whose word/document.xml unpacks to `megabytes` x 0.9 MB (about 1.6 MB for 600),
    written in pieces so the test never holds the unpacked XML."""
    document = docx.Document()
    document.add_paragraph("A normal first paragraph.")
    plain, out = io.BytesIO(), io.BytesIO()
    document.save(plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for item in src.infolist():
            if item.filename != "word/document.xml":
                dst.writestr(item, src.read(item.filename))
                continue
            head, tail = src.read(item.filename).split(b"<w:body>", 1)
            with dst.open("word/document.xml", "w", force_zip64=True) as part:
                part.write(head + b"<w:body>")
                for _ in range(megabytes):
                    part.write(PARAGRAPH)
                part.write(tail)
    return out.getvalue()


def shared_stream_pdf(pages: int, operators: int = 20_000) -> bytes:
    """A small PDF (about 20 KB for 200 pages) whose pages all draw one compressed content stream of
    `operators` text operators: pypdf spends about a second of CPU on each page."""
    import zlib

    stream = zlib.compress(b"BT /F1 12 Tf 72 720 Td (x) Tj ET\n" * operators, 9)
    kids = b" ".join(f"{5 + i} 0 R".encode() for i in range(pages))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [" + kids + b"] /Count " + str(pages).encode() + b" >>",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               b"<< /Length " + str(len(stream)).encode() + b" /Filter /FlateDecode >>\nstream\n" + stream
               + b"\nendstream"]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                b"/Contents 4 0 R >>"] * pages
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = zip_bomb_docx(600)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sum(m.file_size for m in archive.infolist()) > 500_000_000 and len(data) < 2_000_000
    return data


def peak_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def upload(client, assistant_id: str, name: str, data: bytes):
    return client.post("/api/sources", data={"assistant_id": assistant_id},
                       files={"file": (name, data, "application/octet-stream")})


def limits(monkeypatch, **values: object) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))
    clear_caches()


def assert_refused(reply, status: int, code: str, setting: str, file_name: str) -> None:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["code"] == code and setting in error["message"], error
    assert error["details"]["setting"] == setting and error["details"]["file_name"] == file_name
    assert isinstance(error["details"]["limit"], int | float)


def no_sources(engine) -> bool:
    with engine.db() as conn:
        return conn.execute("SELECT count(*) AS n FROM sources").fetchone()["n"] == 0


def test_a_docx_zip_bomb_is_refused_before_anything_unpacks_it(engine, bomb) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    before = peak_mb()
    reply = upload(client, assistant_id, "bomb.docx", bomb)
    assert_refused(reply, 413, "decompressed_too_large", "PARSE_MAX_DECOMPRESSED_BYTES", "bomb.docx")
    assert reply.json()["error"]["details"]["limit"] == 64_000_000
    # The API serves from this process: its peak memory hardly moved (the old code went past 2 GB).
    print(f"\npeak RSS of the API process: {before:.0f} MB before, {peak_mb():.0f} MB after the bomb")
    assert peak_mb() - before < 200
    assert no_sources(engine)


def test_a_bomb_within_the_size_limit_is_stopped_by_the_memory_cap(engine, bomb, monkeypatch) -> None:
    # With the unpacked-size check out of the way, the child's address-space cap is what stops it.
    limits(monkeypatch, PARSE_MAX_DECOMPRESSED_BYTES=10**10, PARSE_MAX_MEMORY_MB=400, PARSE_TIMEOUT_S=120)
    client, _, assistant_id = knowledge_setup(engine)
    before = peak_mb()
    reply = upload(client, assistant_id, "bomb.docx", bomb)
    assert_refused(reply, 422, "parse_out_of_memory", "PARSE_MAX_MEMORY_MB", "bomb.docx")
    print(f"\npeak RSS: API process +{peak_mb() - before:.0f} MB")
    # (RUSAGE_CHILDREN is the largest of every child this test process ever had, e.g. the browser's in a
    # full run, so it can't bound this child; the parse_out_of_memory refusal shows the cap stopped it.)
    assert peak_mb() - before < 200
    assert no_sources(engine)


@pytest.mark.timeout(60)  # the old code parsed all 200 pages in the request: minutes
def test_a_pdf_built_to_be_slow_is_stopped_at_the_parse_timeout(engine, monkeypatch) -> None:
    limits(monkeypatch, PARSE_TIMEOUT_S=2)
    client, _, assistant_id = knowledge_setup(engine)
    reply = upload(client, assistant_id, "slow.pdf", shared_stream_pdf(200))
    assert_refused(reply, 422, "parse_timeout", "PARSE_TIMEOUT_S", "slow.pdf")
    assert reply.json()["error"]["details"]["limit"] == 2
    assert no_sources(engine)
    # A normal PDF right after still parses: the stopped child left nothing behind.
    from tests.fakes.site_server import minimal_pdf

    fine = upload(client, assistant_id, "ok.pdf", minimal_pdf("Anvils are heavy."))
    assert fine.status_code == 202 and wait_synced(engine, client, fine.json()["id"])["status"] == "ready"


@pytest.mark.timeout(60)
def test_a_pdf_with_more_pages_than_allowed_is_refused(engine, monkeypatch) -> None:
    limits(monkeypatch, PARSE_MAX_PAGES=50)
    client, _, assistant_id = knowledge_setup(engine)
    reply = upload(client, assistant_id, "long.pdf", shared_stream_pdf(200))
    assert_refused(reply, 413, "too_many_pages", "PARSE_MAX_PAGES", "long.pdf")
    assert "200" in reply.json()["error"]["message"]
    assert no_sources(engine)


@pytest.mark.timeout(60)
def test_a_crawled_pdf_past_a_bound_is_a_failed_page_not_a_crash(engine, site, monkeypatch) -> None:
    limits(monkeypatch, PARSE_TIMEOUT_S=2)
    site.pages["/docs/slow.pdf"] = ("application/pdf", shared_stream_pdf(200))
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="url",
                                                    url=f"{site.url}/docs/slow.pdf")["id"])
    assert source["status"] == "failed" and source["pages_failed"] == 1
    [failed] = source["failed_pages"]
    assert failed["error"].startswith("parse_timeout: ") and "PARSE_TIMEOUT_S" in failed["error"]
    assert site.hits["/docs/slow.pdf"] == 1  # the same file would time out again: not retried
    # The crawl goes on with the next file.
    fine = wait_synced(engine, client, add_source(client, assistant_id, kind="url",
                                                  url=f"{site.url}/docs/manual.pdf")["id"])
    assert fine["status"] == "ready"
