"""One contract for every vector store: pgvector and Pinecone (the SDK against the local stand-in) behave alike."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest

from shared.knowledge.vectors import VectorRecord, get_vector_store
from shared.knowledge.vectors.pinecone_store import upsert_batches
from tests.fakes.embeddings_server import embed
from tests.fakes.fixtures import add_page, make_assistant


@pytest.fixture(params=["pgvector", "pinecone"])
def store(request: pytest.FixtureRequest, engine: Any) -> Any:
    if request.param == "pinecone":
        request.getfixturevalue("pinecone_api")
    store = get_vector_store()
    assert store.name == request.param
    return store


class Corpus:
    """Two workspaces; ours has assistants A (two sources) and B; chunk rows exist before their vectors."""

    def __init__(self, engine: Any) -> None:
        self.ws, _ = engine.workspace("Ours")
        self.other_ws, _ = engine.workspace("Theirs")
        with engine.db() as conn:
            self.a = make_assistant(conn, self.ws, "A")
            self.b = make_assistant(conn, self.ws, "B")
            self.foreign = make_assistant(conn, self.other_ws, "Foreign")
            self.a1 = add_page(conn, self.ws, self.a, "Alpha", [("one", "alpha one"), ("two", "alpha two")])
            self.a2 = add_page(conn, self.ws, self.a, "Beta", [("one", "beta one")])
            self.b1 = add_page(conn, self.ws, self.b, "Gamma", [("one", "alpha one")])
            self.f1 = add_page(conn, self.other_ws, self.foreign, "Delta", [("one", "alpha one")])

    @staticmethod
    def records(rows: list[dict[str, Any]]) -> list[VectorRecord]:
        return [VectorRecord.for_chunk(row, embed(row["text"])) for row in rows]


def ids(matches: list[tuple[str, float]]) -> list[str]:
    return [m[0] for m in matches]


def test_upsert_then_query_is_filtered_by_workspace_and_assistant(engine, store) -> None:
    c = Corpus(engine)
    assert store.upsert(c.ws, c.records(c.a1 + c.a2 + c.b1)) == 4
    assert store.upsert(c.other_ws, c.records(c.f1)) == 1
    matches = store.query(c.ws, c.a, embed("alpha one"), top_k=10)
    assert ids(matches)[0] == c.a1[0]["id"] and matches[0][1] == pytest.approx(1.0, abs=1e-5)
    assert set(ids(matches)) == {r["id"] for r in c.a1 + c.a2}
    assert all(a[1] >= b[1] for a, b in itertools.pairwise(matches))
    assert ids(store.query(c.ws, c.b, embed("alpha one"), top_k=10)) == [c.b1[0]["id"]]
    assert ids(store.query(c.other_ws, c.foreign, embed("alpha one"), top_k=10)) == [c.f1[0]["id"]]
    # Another workspace's assistant, asked through our workspace, has nothing.
    assert store.query(c.ws, c.foreign, embed("alpha one"), top_k=10) == []
    assert len(store.query(c.ws, c.a, embed("alpha one"), top_k=2)) == 2


def test_re_upsert_replaces_and_never_duplicates(engine, store) -> None:
    c = Corpus(engine)
    store.upsert(c.ws, c.records(c.a1))
    store.upsert(c.ws, c.records(c.a1))
    changed = VectorRecord.for_chunk(c.a1[0], embed("completely different words"))
    store.upsert(c.ws, [changed])
    matches = store.query(c.ws, c.a, embed("completely different words"), top_k=10)
    assert ids(matches) == [c.a1[0]["id"], c.a1[1]["id"]]
    assert matches[0][1] == pytest.approx(1.0, abs=1e-5)


def test_delete_by_ids_source_and_assistant(engine, store) -> None:
    c = Corpus(engine)
    store.upsert(c.ws, c.records(c.a1 + c.a2 + c.b1))
    store.delete(c.ws, [c.a1[0]["id"], "no-such-id"])
    assert set(ids(store.query(c.ws, c.a, embed("alpha"), top_k=10))) == {c.a1[1]["id"], c.a2[0]["id"]}
    store.delete_by_filter(c.ws, source_id=c.a1[0]["source_id"])
    assert ids(store.query(c.ws, c.a, embed("alpha"), top_k=10)) == [c.a2[0]["id"]]
    store.delete_by_filter(c.ws, assistant_id=c.a)
    assert store.query(c.ws, c.a, embed("alpha"), top_k=10) == []
    assert ids(store.query(c.ws, c.b, embed("alpha"), top_k=10)) == [c.b1[0]["id"]]  # B untouched
    with pytest.raises(ValueError):
        store.delete_by_filter(c.ws)  # never "everything" by accident


def test_deleting_from_an_empty_workspace_is_a_no_op(engine, store) -> None:
    c = Corpus(engine)
    store.delete(c.ws, [c.a1[0]["id"]])
    store.delete_by_filter(c.ws, assistant_id=c.a)
    assert store.query(c.ws, c.a, embed("alpha"), top_k=5) == []


def dense(seed: int) -> list[float]:
    """A dense unit vector (about 30 KB of JSON, so ~70 fit the 2 MB request limit)."""
    rng = random.Random(seed)
    values = [rng.gauss(0, 1) for _ in range(1536)]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def test_large_batches_stay_within_the_request_limits(engine, store, request) -> None:
    c = Corpus(engine)
    with engine.db() as conn:
        rows = add_page(conn, c.ws, c.a, "Bulk", [(f"h{i}", f"bulk text number {i}") for i in range(150)])
    records = [VectorRecord.for_chunk(row, dense(i)) for i, row in enumerate(rows)]
    assert store.upsert(c.ws, records) == 150
    assert ids(store.query(c.ws, c.a, dense(117), top_k=1)) == [rows[117]["id"]]
    # 1,100 ids (950 of them unknown): more than one delete request allows.
    store.delete(c.ws, [row["id"] for row in rows] + [f"gone-{i}" for i in range(950)])
    assert store.query(c.ws, c.a, dense(117), top_k=5) == []
    if store.name == "pinecone":
        fake = request.getfixturevalue("pinecone_api")
        upserts = [size for path, size in fake.requests if path == "/vectors/upsert"]
        deletes = [size for path, size in fake.requests if path == "/vectors/delete"]
        assert len(upserts) >= 3 and max(upserts) <= 2 * 1024 * 1024
        assert len(deletes) == 2  # 1,000 + 100 ids


def test_health_describes_the_store(engine, store) -> None:
    assert store.name in store.health()


def test_upsert_batches_respect_count_and_size() -> None:
    small = [{"id": str(i), "values": [0.5], "metadata": {}} for i in range(2500)]
    assert [len(b) for b in upsert_batches(small)] == [1000, 1000, 500]
    wide = [{"id": str(i), "values": [0.123456789] * 1536, "metadata": {"assistant": "a"}} for i in range(200)]
    batches = list(upsert_batches(wide))
    assert sum(len(b) for b in batches) == 200 and len(batches) > 1
    import json

    assert all(len(json.dumps({"vectors": b, "namespace": "ws"}, separators=(",", ":")).encode()) <= 2 * 1024 * 1024
               for b in batches)


def test_pinecone_metadata_has_no_nulls_and_stays_under_40_kb(engine, pinecone_api) -> None:
    store = get_vector_store()
    c = Corpus(engine)
    record = VectorRecord(c.a1[0]["id"], embed("x"), {"assistant": c.a, "source": None, "document": "d", "chunk": 0})
    assert store.upsert(c.ws, [record]) == 1
    assert pinecone_api.vectors("dialog-engine", c.ws)[record.id]["metadata"] == {
        "assistant": c.a, "document": "d", "chunk": 0}
    with pytest.raises(ValueError, match="40960"):
        store.upsert(c.ws, [VectorRecord("big", embed("x"), {"assistant": c.a, "note": "x" * 41_000})])
