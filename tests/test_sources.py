"""/api/sources: pasted text and markdown, file uploads (txt, md, html, pdf, docx) with limits and clear
errors for broken files, validation, tenancy, admin-only access, listing, delete, resync and schedules."""

from __future__ import annotations

import io
import os

import docx

from shared.core.queue import publish
from shared.guard.auth import create_key
from shared.knowledge.retrieval import retrieve
from tests.fakes.crawl_fixtures import add_source, chunk_rows, knowledge_setup, wait_synced
from tests.fakes.fixtures import make_assistant
from tests.fakes.site_server import minimal_pdf
from tests.plugins.stack import clear_caches

GUIDE = "# Anvil guide\n\n## Care\n\nOil the anvil monthly.\n\n## Storage\n\nKeep anvils dry and away from cliffs."


def upload(client, assistant_id: str, name: str, data: bytes, **fields: str):
    return client.post("/api/sources", data={"assistant_id": assistant_id, **fields},
                       files={"file": (name, data, "application/octet-stream")})


def docx_bytes() -> bytes:
    document = docx.Document()
    document.add_heading("Skate manual", level=1)
    document.add_paragraph("Rocket skates need a helmet and open desert roads.")
    document.add_heading("Brakes", level=2)
    document.add_paragraph("Brakes are optional but recommended near canyons.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Model", "Top speed"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_markdown_and_text_sources_are_indexed(engine) -> None:
    client, workspace_id, assistant_id = knowledge_setup(engine)
    md = add_source(client, assistant_id, kind="markdown", title="Anvil guide", content=GUIDE)
    assert md["kind"] == "markdown" and "content" not in md["config"]
    text = add_source(client, assistant_id, kind="text", title="Opening hours", content="We open at nine daily.",
                      language="de")
    md, text = wait_synced(engine, client, md["id"]), wait_synced(engine, client, text["id"])
    assert md["status"] == text["status"] == "ready" and md["pages_done"] == 1 and md["embeddings"] == "keyword_only"
    assert text["language"] == "german"
    rows = chunk_rows(engine, md["id"])
    # Two small sibling sections share one chunk under their parent heading.
    assert [r["heading_path"] for r in rows] == ["Anvil guide"]
    assert "## Care" in rows[0]["text"] and "## Storage" in rows[0]["text"]
    assert all(r["title"] == "Anvil guide" and r["url"] is None for r in rows)
    with engine.db() as conn:
        [hit] = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query="keep anvils dry",
                         top_k=1, mode="keyword")
    assert hit.source_id == md["id"] and "dry" in hit.text
    pages = client.get(f"/api/sources/{md['id']}/pages").json()
    assert pages["count"] == 1 and pages["data"][0]["status"] == "ready" and pages["data"][0]["chunks"] == len(rows)


def test_files_of_each_kind_are_parsed_and_indexed(engine) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    files = {
        "notes.txt": (b"Plain notes: the workshop closes on Sundays.", "Sundays"),
        "guide.md": (GUIDE.encode(), "cliffs"),
        "page.html": ((b"<html><head><title>Help page</title></head><body><main><h1>Help</h1>"
                       b"<p>Call the coyote hotline for anvil emergencies.</p></main></body></html>"), "hotline"),
        "manual.pdf": (minimal_pdf("Anvil warranty lasts ten years."), "warranty"),
        "skates.docx": (docx_bytes(), "canyons"),
    }
    created = {}
    for name, (data, _) in files.items():
        reply = upload(client, assistant_id, name, data)
        assert reply.status_code == 202, (name, reply.text)
        created[name] = reply.json()
        assert created[name]["kind"] == "file" and created[name]["config"]["file_name"] == name
        assert created[name]["config"]["file_size"] == len(data) and "content" not in created[name]["config"]
    for name, (_, word) in files.items():
        source = wait_synced(engine, client, created[name]["id"])
        assert source["status"] == "ready", (name, source)
        assert any(word in r["text"] for r in chunk_rows(engine, source["id"])), name
    assert created["page.html"]["title"] == "Help page" and created["guide.md"]["title"] == "Anvil guide"
    assert created["notes.txt"]["title"] == "notes"
    docx_rows = chunk_rows(engine, created["skates.docx"]["id"])
    # Word headings became markdown headings (small sections share a chunk), the table became a row.
    assert docx_rows[0]["heading_path"] == "Skate manual" and "## Brakes" in docx_rows[0]["text"]
    assert "| Model | Top speed |" in docx_rows[0]["text"]
    titled = upload(client, assistant_id, "x.txt", b"Content here.", title="My title", language="french").json()
    assert titled["title"] == "My title" and titled["language"] == "french"
    assert wait_synced(engine, client, titled["id"])["status"] == "ready"


def test_upload_limits_and_broken_files_get_clear_4xx(engine, monkeypatch) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "2000")
    clear_caches()
    too_big = upload(client, assistant_id, "big.txt", b"a" * 5000)
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "payload_too_large" and "2000" in too_big.json()["error"]["message"]
    big_json = client.post("/api/sources", json={"assistant_id": assistant_id, "kind": "text", "title": "t",
                                                 "content": "b" * 5000})
    assert big_json.status_code == 413

    cases = {
        ("tool.exe", b"MZ\x90\x00"): (415, "unsupported_file_type"),
        ("noext", b"hello"): (415, "unsupported_file_type"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj garbage"): (422, "unreadable_file"),
        ("fake.pdf", b"just text"): (422, "unreadable_file"),
        ("broken.docx", b"PK\x03\x04 not really a zip"): (422, "unreadable_file"),
        ("plain.docx", b"hello"): (422, "unreadable_file"),
        ("binary.txt", b"\x00\x01\x02binary\x00"): (422, "unreadable_file"),
        ("empty.md", b""): (422, "empty_file"),
        ("blank.md", b"   \n\n  "): (422, "empty_file"),
    }
    for (name, data), (status, code) in cases.items():
        reply = upload(client, assistant_id, name, data)
        assert reply.status_code == status, (name, reply.text)
        assert reply.json()["error"]["code"] == code, (name, reply.json())
    missing_file = client.post("/api/sources", data={"assistant_id": assistant_id})
    assert missing_file.status_code == 422 and missing_file.json()["error"]["code"] == "file_missing"
    missing_assistant = client.post("/api/sources", files={"file": ("a.txt", b"hi", "text/plain")})
    assert missing_assistant.status_code == 422
    with engine.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM sources").fetchone()["n"] == 0


def test_invalid_requests_are_refused_with_the_field_named(engine, site) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    cases = [
        ({"kind": "url"}, "url"),
        ({"kind": "text", "content": "x"}, "title"),
        ({"kind": "markdown", "title": "t", "content": "   "}, "content"),
        ({"kind": "site", "url": f"{site.url}/", "include_paths": ["(unclosed"]}, "include_paths"),
        ({"kind": "site", "url": f"{site.url}/", "limit": 0}, "limit"),
        ({"kind": "text", "title": "t", "content": "x", "language": "klingon"}, "language"),
        ({"kind": "video", "url": f"{site.url}/"}, "kind"),
        ({"kind": "text", "title": "t", "content": "x", "sync_interval_hours": 24}, "sync_interval_hours"),
        ({"kind": "url", "url": f"{site.url}/", "surprise": 1}, "surprise"),
    ]
    for body, field in cases:
        reply = client.post("/api/sources", json={"assistant_id": assistant_id, **body})
        assert reply.status_code == 422, (body, reply.text)
        assert field in {d["field"] for d in reply.json()["error"]["details"]}, (body, reply.json())
    bad_json = client.post("/api/sources", content=b"{nope", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"


def test_sources_belong_to_one_workspace_and_need_an_admin_key(engine) -> None:
    client, workspace_id, assistant_id = knowledge_setup(engine)
    other_client, _, other_assistant = knowledge_setup(engine)
    source = add_source(client, assistant_id, kind="text", title="Mine", content="private knowledge")
    reply = client.post("/api/sources", json={"assistant_id": other_assistant, "kind": "text", "title": "x",
                                              "content": "y"})
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "assistant_not_found"
    for method, path in (("GET", f"/api/sources/{source['id']}"), ("DELETE", f"/api/sources/{source['id']}"),
                         ("POST", f"/api/sources/{source['id']}/resync"),
                         ("GET", f"/api/sources/{source['id']}/pages"),
                         ("GET", f"/api/sources?assistant_id={assistant_id}")):
        assert other_client.request(method, path).status_code == 404, (method, path)
    assert other_client.get("/api/sources").json()["count"] == 0
    with engine.db() as conn:
        chat_key, _ = create_key(conn, workspace_id, "chat")
    chat = engine.client(chat_key)
    assert chat.get("/api/sources").status_code == 403
    assert chat.post("/api/sources", json={"assistant_id": assistant_id, "kind": "text", "title": "x",
                                           "content": "y"}).status_code == 403
    assert engine.client().get("/api/sources").status_code == 401
    assert wait_synced(engine, client, source["id"])["status"] == "ready"


def test_listing_pages_through_sources_newest_first(engine) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    with engine.db() as conn:
        other_assistant = make_assistant(conn, engine_workspace(engine, client))
    ids = [add_source(client, assistant_id, kind="text", title=f"T{i}", content=f"c{i}")["id"] for i in range(3)]
    add_source(client, other_assistant, kind="text", title="other", content="z")
    first = client.get("/api/sources", params={"assistant_id": assistant_id, "limit": 2}).json()
    assert [s["id"] for s in first["data"]] == ids[::-1][:2] and first["next_cursor"]
    second = client.get("/api/sources", params={"assistant_id": assistant_id, "limit": 2,
                                                "cursor": first["next_cursor"]}).json()
    assert [s["id"] for s in second["data"]] == [ids[0]] and second["next_cursor"] is None
    assert client.get("/api/sources").json()["count"] == 4
    engine.wait_for_queue()


def engine_workspace(engine, client) -> str:
    with engine.db() as conn:
        return conn.execute("SELECT workspace_id FROM api_keys WHERE hash = %s",
                            (_hash(client.headers["authorization"][7:]),)).fetchone()["workspace_id"]


def _hash(key: str) -> str:
    from shared.guard.auth import hash_key

    return hash_key(key)


def test_delete_removes_documents_chunks_and_vectors(engine, embeddings_api) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    keep = wait_synced(engine, client, add_source(client, assistant_id, kind="markdown", title="Keep",
                                                  content="# Keep\n\nThis stays.")["id"])
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="markdown", title="Anvil guide",
                                                    content=GUIDE)["id"])
    rows = chunk_rows(engine, source["id"])
    assert rows and all(r["has_embedding"] for r in rows) and source["embeddings"] == "ready"

    reply = client.delete(f"/api/sources/{source['id']}")
    assert reply.status_code == 200
    assert reply.json() == {"id": source["id"], "deleted": True, "documents": 1, "chunks": len(rows)}
    assert client.get(f"/api/sources/{source['id']}").status_code == 404
    assert client.delete(f"/api/sources/{source['id']}").status_code == 404
    with engine.db() as conn:
        left = conn.execute("SELECT source_id, count(*) AS n FROM chunks GROUP BY source_id").fetchall()
        assert [r["source_id"] for r in left] == [keep["id"]]
        assert conn.execute("SELECT count(*) AS n FROM documents WHERE source_id = %s",
                            (source["id"],)).fetchone()["n"] == 0


def test_resync_now_and_on_a_schedule(engine, site) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="url", url=f"{site.url}/pricing",
                                                    sync_interval_hours=24)["id"])
    assert source["status"] == "ready" and source["sync_interval_hours"] == 24 and source["next_sync_at"]
    first_sync = source["last_synced_at"]

    reply = client.post(f"/api/sources/{source['id']}/resync")
    assert reply.status_code == 202 and reply.json()["status"] == "queued" and reply.json()["pages_found"] == 0
    source = wait_synced(engine, client, source["id"])
    assert source["status"] == "ready" and source["last_synced_at"] > first_sync and site.hits["/pricing"] == 2

    patched = client.patch(f"/api/sources/{source['id']}", json={"sync_interval_hours": None, "title": "Prices"})
    assert patched.status_code == 200 and patched.json()["next_sync_at"] is None and patched.json()["title"] == "Prices"
    patched = client.patch(f"/api/sources/{source['id']}", json={"sync_interval_hours": 1, "limit": 5})
    assert patched.json()["next_sync_at"] and patched.json()["config"]["limit"] == 5
    assert client.patch(f"/api/sources/{source['id']}", json={"include_paths": ["("]}).status_code == 422

    # The hourly cron re-syncs what is due (and only that).
    with engine.db() as conn:
        conn.execute("UPDATE sources SET next_sync_at = now() - interval '1 minute' WHERE id = %s", (source["id"],))
    cron = engine.client().get("/api/cron/resync", headers={"Authorization": f"Bearer {os.environ['CRON_SECRET']}"})
    assert cron.status_code == 200 and cron.json()["queued"] == "resync_due"
    source = wait_synced(engine, client, source["id"])
    assert site.hits["/pricing"] == 3 and source["status"] == "ready"
    with engine.db() as conn:
        row = conn.execute("SELECT sync_generation, next_sync_at > now() AS later FROM sources WHERE id = %s",
                           (source["id"],)).fetchone()
    assert row["sync_generation"] == 3 and row["later"]


def test_the_hourly_job_revives_stalled_syncs_and_ends_abandoned_ones(engine, site) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    stalled = wait_synced(engine, client, add_source(client, assistant_id, kind="url", url=f"{site.url}/pricing")["id"])
    abandoned = wait_synced(engine, client, add_source(client, assistant_id, kind="url", url=f"{site.url}/about")["id"])
    # Both lost their page job mid-sync (a crashed function, a queue outage): pending, no progress since.
    with engine.db() as conn:
        for source_id, idle in ((stalled["id"], "1 hour"), (abandoned["id"], "4 hours")):
            conn.execute("""UPDATE sources SET sync_generation = 2, status = 'indexing',
                                updated_at = now() - %s::interval WHERE id = %s""", (idle, source_id))
            conn.execute("UPDATE documents SET sync_generation = 2, status = 'pending' WHERE source_id = %s",
                         (source_id,))
    publish("resync_due", {"cron": "resync"})  # what the hourly cron queues (its route dedups per minute)
    stalled, abandoned = wait_synced(engine, client, stalled["id"]), wait_synced(engine, client, abandoned["id"])
    assert stalled["status"] == "ready" and site.hits["/pricing"] == 2  # its page job was queued again
    assert abandoned["status"] == "failed" and site.hits["/about"] == 1
    assert abandoned["failed_pages"][0]["error"].startswith("timed_out")
    with engine.db() as conn:  # the abandoned page keeps its last good chunks until it is synced again
        assert conn.execute("SELECT count(*) AS n FROM chunks WHERE source_id = %s",
                            (abandoned["id"],)).fetchone()["n"] >= 1
