"""POST /api/search: the passages an assistant would retrieve, with each method's rank and score."""

from __future__ import annotations

from tests.fakes.chat_fixtures import new_chat_key
from tests.fakes.fixtures import add_page, load_corpus, make_assistant


def test_results_show_each_methods_rank_and_score(engine, embeddings_api) -> None:
    workspace_id, admin = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        load_corpus(conn, workspace_id, assistant_id)
    reply = engine.client(admin).post("/api/search", json={"assistant_id": assistant_id,
                                                           "query": "How do I reset my password?"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["mode"] == body["effective_mode"] == "hybrid" and body["top_k"] == 5  # the template's defaults
    top = body["results"][0]
    assert top["heading_path"] == "Resetting your password" and top["score"] == 1.0
    assert top["keyword"]["rank"] == 1 and top["keyword"]["score"] > 0
    assert top["vector"]["rank"] == 1 and 0 < top["vector"]["score"] <= 1
    assert top["url"] == "https://docs.example.com/account-security" and "Settings" in top["text"]
    assert body["count"] == len(body["results"]) <= 5

    keyword = engine.client(admin).post("/api/search", json={"assistant_id": assistant_id, "mode": "keyword",
                                                             "query": "reset password", "top_k": 1}).json()
    assert keyword["count"] == 1 and keyword["results"][0]["vector"] == {"rank": None, "score": None}
    strict = engine.client(admin).post("/api/search", json={"assistant_id": assistant_id, "min_score": 0.99,
                                                            "query": "password invoices widget"}).json()
    assert all(r["score"] >= 0.99 for r in strict["results"])


def test_without_embeddings_the_search_says_it_ran_keyword_only(engine) -> None:
    workspace_id, admin = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        load_corpus(conn, workspace_id, assistant_id, embed=False)
    body = engine.client(admin).post("/api/search", json={"assistant_id": assistant_id, "mode": "hybrid",
                                                          "query": "credit card"}).json()
    assert body["effective_mode"] == "keyword"
    assert body["results"][0]["heading_path"] == "Payment methods"


def test_another_workspaces_assistant_is_not_found(engine) -> None:
    _, admin = engine.workspace("Mine")
    other_workspace, _ = engine.workspace("Theirs")
    with engine.db() as conn:
        foreign = make_assistant(conn, other_workspace)
        add_page(conn, other_workspace, foreign, "Secret", [("Secret", "the password is swordfish")])
    reply = engine.client(admin).post("/api/search", json={"assistant_id": foreign, "query": "password"})
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "assistant_not_found"


def test_search_needs_an_admin_key_and_a_valid_body(engine) -> None:
    workspace_id, admin = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
    chat_key = new_chat_key(engine, admin, assistant_id)["key"]
    assert engine.client(chat_key).post("/api/search", json={"assistant_id": assistant_id,
                                                             "query": "x"}).status_code == 403
    assert engine.client().post("/api/search", json={"assistant_id": assistant_id, "query": "x"}).status_code == 401
    for bad in ({"assistant_id": assistant_id}, {"assistant_id": assistant_id, "query": "x", "top_k": 0},
                {"assistant_id": assistant_id, "query": "x", "mode": "magic"},
                {"assistant_id": assistant_id, "query": "x", "extra": 1}):
        assert engine.client(admin).post("/api/search", json=bad).status_code == 422, bad
