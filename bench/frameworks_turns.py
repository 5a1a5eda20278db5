"""Turn latency beside LangChain and LlamaIndex: the time from a turn's start until its chat-completions request
arrives at the model stand-in (bench/frameworks.py runs it; see there for the command).

One local stack (PostgreSQL + pgvector, Redis, the Upstash stand-in), one synthetic corpus (bench/retrieval.py's
World: the same chunk texts and vectors in the engine's `chunks` table and in each framework's own table, each
with its own HNSW index), one OpenAI chat stand-in (tests/fakes) that records when each request arrives, one
embeddings stand-in answering with the corpus's vectors. The frameworks and the floor run in this process; the
engine runs as one uvicorn worker (`make dev`'s router) and is called over HTTP. The variants take turns, one
turn each in rotation, so they share the machine's load as it drifts.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

from bench import retrieval as corpus
from bench._harness import chat_stand_ins_in_threads, first_event, pct, serve_app, stop_process

MODEL = "gpt-4o-mini"
TOP_K = 5
HNSW = {"hnsw_m": 16, "hnsw_ef_construction": 64, "hnsw_ef_search": 40, "hnsw_dist_method": "vector_cosine_ops"}
SYSTEM = "Answer from these passages only.\n\n{context}"
LLAMA_TABLE = "bench"  # LlamaIndex stores it as data_bench
LLAMA_HYBRID_TABLE = "bench_hybrid"
LANGCHAIN_COLLECTION = "bench"


def sqlalchemy_url(dsn: str, driver: str) -> str:
    """The stack's libpq URL (a Unix socket in ?host=) for a SQLAlchemy driver."""
    return dsn.replace("postgresql://", f"postgresql+{driver}://", 1)


class Floor:
    """What any engine pays at least: embed (httpx), one dense SELECT (psycopg), the chat request (httpx)."""

    name = "hand-written floor (psycopg + httpx, dense only)"

    def __init__(self, ids: dict[str, str], urls: dict[str, str], api_key: str) -> None:
        import httpx
        import psycopg
        from pgvector.psycopg import register_vector

        self.ids, self.urls = ids, urls
        self.http = httpx.Client(headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
        self.conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
        register_vector(self.conn)

    def turn(self, question: str, new_conversation: bool) -> None:
        import numpy as np

        reply = self.http.post(f"{self.urls['embed']}/embeddings", json={
            "model": "text-embedding-3-small", "input": question, "encoding_format": "base64"})
        vector = np.frombuffer(base64.b64decode(reply.json()["data"][0]["embedding"]), dtype=np.float32)
        rows = self.conn.execute(
            "SELECT text FROM chunks WHERE workspace_id = %s AND assistant_id = %s ORDER BY embedding <=> %s LIMIT %s",
            (self.ids["ws"], self.ids["asst"], vector, TOP_K)).fetchall()
        context = "\n\n".join(row[0] for row in rows)
        body = {"model": MODEL, "stream": True, "messages": [
            {"role": "system", "content": SYSTEM.format(context=context)}, {"role": "user", "content": question}]}
        with self.http.stream("POST", f"{self.urls['model']}/chat/completions", json=body) as stream:
            for _ in stream.iter_lines():
                pass


class LangChainLCEL:
    """retriever | prompt | ChatOpenAI | StrOutputParser over langchain-postgres' PGVector, streamed."""

    name = "LangChain LCEL + PGVector (dense)"

    def __init__(self, urls: dict[str, str], api_key: str) -> None:
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate
        from langchain_core.runnables import RunnablePassthrough
        from langchain_openai import ChatOpenAI

        store = langchain_store(urls["embed"], api_key, 1536)
        retriever = store.as_retriever(search_kwargs={"k": TOP_K})
        prompt = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", "{question}")])
        llm = ChatOpenAI(model=MODEL, api_key=api_key, base_url=urls["model"], streaming=True)

        def join(documents: list[Any]) -> str:
            return "\n\n".join(d.page_content for d in documents)

        self.chain = ({"context": retriever | join, "question": RunnablePassthrough()} | prompt | llm
                      | StrOutputParser())

    def turn(self, question: str, new_conversation: bool) -> None:
        for _ in self.chain.stream(question):
            pass


def langchain_store(embed_url: str, api_key: str, dim: int, collection: str = LANGCHAIN_COLLECTION) -> Any:
    from langchain_openai import OpenAIEmbeddings
    from langchain_postgres import PGVector

    # check_embedding_ctx_length=False sends texts, not tiktoken ids: what LangChain's docs say for an
    # OpenAI-compatible server (the stand-ins embed text).
    embeddings = OpenAIEmbeddings(model="text-embedding-3-small", api_key=api_key, base_url=embed_url,
                                  dimensions=None if dim == 1536 else dim, check_embedding_ctx_length=False)
    return PGVector(embeddings=embeddings, connection=sqlalchemy_url(os.environ["DATABASE_URL"], "psycopg"),
                    embedding_length=dim, collection_name=collection)


def llama_store(dim: int, table: str = LLAMA_TABLE, hybrid: bool = False) -> Any:
    from llama_index.vector_stores.postgres import PGVectorStore

    dsn = os.environ["DATABASE_URL"]
    return PGVectorStore(connection_string=sqlalchemy_url(dsn, "psycopg2"),
                         async_connection_string=sqlalchemy_url(dsn, "asyncpg"), table_name=table,
                         embed_dim=dim, hnsw_kwargs=dict(HNSW), hybrid_search=hybrid, text_search_config="english")


def llama_models(urls: dict[str, str], api_key: str, dim: int = 1536) -> tuple[Any, Any]:
    from llama_index.embeddings.openai import OpenAIEmbedding
    from llama_index.llms.openai import OpenAI

    embed = OpenAIEmbedding(model="text-embedding-3-small", api_key=api_key, api_base=urls["embed"],
                            dimensions=None if dim == 1536 else dim)
    return embed, OpenAI(model=MODEL, api_key=api_key, api_base=urls.get("model"))


class LlamaQueryEngine:
    name = "LlamaIndex query engine (dense)"

    def __init__(self, index: Any, llm: Any) -> None:
        self.engine = index.as_query_engine(llm=llm, streaming=True, similarity_top_k=TOP_K)

    def turn(self, question: str, new_conversation: bool) -> None:
        for _ in self.engine.query(question).response_gen:
            pass


class LlamaHybrid:
    """Its query engine in hybrid mode: the dense query, then a full-text one (ts_rank_cd over a generated
    tsvector with a GIN index), results merged: the one framework path here that, like the engine, does both."""

    name = "LlamaIndex query engine, hybrid (dense + full text)"

    def __init__(self, index: Any, llm: Any) -> None:
        self.engine = index.as_query_engine(llm=llm, streaming=True, similarity_top_k=TOP_K, sparse_top_k=TOP_K,
                                            vector_store_query_mode="hybrid")

    def turn(self, question: str, new_conversation: bool) -> None:
        for _ in self.engine.query(question).response_gen:
            pass


class LlamaChatEngine:
    """chat_mode="context": retrieve with the message, answer with the retrieved text and the (in-memory) history.
    (condense_plus_context would ask the model to rewrite the question first, a model request before retrieval.)"""

    name = "LlamaIndex chat engine (context, dense)"

    def __init__(self, index: Any, llm: Any) -> None:
        self.engine = index.as_chat_engine(chat_mode="context", llm=llm, similarity_top_k=TOP_K)

    def turn(self, question: str, new_conversation: bool) -> None:
        if new_conversation:
            self.engine.reset()
        for _ in self.engine.stream_chat(question).response_gen:
            pass


class Engine:
    """POST /api/chat on the engine's own process: auth, admission, the turn stored, hybrid retrieval."""

    name = "Dialog Engine (HTTP, auth, stores the turn, hybrid)"

    def __init__(self, url: str, key: str, assistant: str) -> None:
        import httpx

        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        self.assistant, self.conversation = assistant, None
        self.engine_ms: list[float] = []  # the engine's own clock: first dependency to the provider request

    def turn(self, question: str, new_conversation: bool) -> None:
        body: dict[str, Any] = {"assistant_id": self.assistant, "message": question}
        if self.conversation and not new_conversation:
            body["conversation_id"] = self.conversation
        _, lines = first_event(self.client, "/api/chat", body)
        events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        self.conversation = events[0]["conversation_id"]
        done = events[-1]
        assert done["status"] == "complete" and done["provider"] == "openai", done
        self.engine_ms.append(done["timings"]["engine_ms"])


def copy_to_langchain(conn: Any, store: Any) -> None:
    """The engine's chunks (text, vector) into LangChain's table, then its HNSW index (the same parameters)."""
    collection = conn.execute("SELECT uuid FROM langchain_pg_collection WHERE name = %s",
                              (LANGCHAIN_COLLECTION,)).fetchone()["uuid"]
    conn.execute("DROP INDEX IF EXISTS langchain_embedding_hnsw")
    conn.execute("DELETE FROM langchain_pg_embedding WHERE collection_id = %s", (collection,))
    conn.execute("""INSERT INTO langchain_pg_embedding (id, collection_id, embedding, document, cmetadata)
                    SELECT id, %s, embedding, text, jsonb_build_object('url', url, 'title', title) FROM chunks""",
                 (collection,))
    conn.execute("SET maintenance_work_mem = '2GB'")
    conn.execute("CREATE INDEX langchain_embedding_hnsw ON langchain_pg_embedding USING hnsw "
                 "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)")
    conn.execute("VACUUM ANALYZE langchain_pg_embedding")


def copy_to_llama(conn: Any, store: Any, name: str) -> None:
    """The same into a LlamaIndex table, with the node metadata its own insert path writes (so queries take its
    normal path), then the HNSW index it declares (dropped for the load, built once after). A hybrid table's
    tsvector is a generated column, filled by the INSERT, its GIN index kept."""
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.utils import node_to_metadata_dict

    store._initialize()  # creates data_<name> and its indexes (what a first add() would do)
    table, index = f"data_{name}", f"data_{name}_embedding_idx"
    conn.execute(f"DROP INDEX IF EXISTS {index}")
    conn.execute(f"TRUNCATE {table}")
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS llama_staging (node_id text, metadata json)")
    conn.execute("TRUNCATE llama_staging")
    rows = conn.execute("SELECT id, url, title FROM chunks").fetchall()
    with conn.cursor().copy("COPY llama_staging FROM STDIN") as copy:
        for row in rows:
            node = TextNode(id_=row["id"], text="", metadata={"url": row["url"], "title": row["title"]})
            copy.write_row((row["id"], json.dumps(node_to_metadata_dict(node, remove_text=True,
                                                                        flat_metadata=False))))
    conn.execute(f"""INSERT INTO {table} (text, metadata_, node_id, embedding)
                     SELECT c.text, s.metadata, c.id, c.embedding
                     FROM chunks c JOIN llama_staging s ON s.node_id = c.id""")
    conn.execute("SET maintenance_work_mem = '2GB'")
    conn.execute(f"CREATE INDEX {index} ON {table} USING hnsw (embedding vector_cosine_ops) "
                 f"WITH (m = {HNSW['hnsw_m']}, ef_construction = {HNSW['hnsw_ef_construction']})")
    conn.execute(f"VACUUM ANALYZE {table}")


def run(sizes: list[int], turns: int, warmup: int, out: list[dict[str, Any]]) -> None:
    """Measure at each size (chunks added between sizes); rows appended to `out` as they are measured."""
    import psycopg

    from shared.core.db import connect

    arrivals: list[tuple[float, str]] = []

    def arrived(request: Any, body: dict[str, Any]) -> None:
        arrivals.append((time.perf_counter(), json.dumps(body.get("messages"))))  # this process: the turns' clock

    world = corpus.World()
    model, urls = chat_stand_ins_in_threads(corpus.embeddings_app(world), on_request=arrived)
    with connect() as conn:
        ids, key = corpus.bench_assistant(conn)
        corpus.topics_table(conn, world)
    url, process = serve_app("scripts.router", "create_router", factory=True,
                             env={**os.environ, "DB_POOL_SIZE": "10"})
    try:
        lc_store = langchain_store(urls["embed"], model.api_key, 1536)
        ll_store = llama_store(1536)
        hybrid_store = llama_store(1536, LLAMA_HYBRID_TABLE, hybrid=True)
        loaded = 0
        for size in sizes:
            began = time.perf_counter()
            with connect() as conn:
                corpus.load(conn, world, ids, loaded, size - loaded)
                corpus.build_index(conn)
                copy_to_langchain(conn, lc_store)
                copy_to_llama(conn, ll_store, LLAMA_TABLE)
                copy_to_llama(conn, hybrid_store, LLAMA_HYBRID_TABLE)
            loaded = size
            print(f"turns: {size} chunks loaded and indexed four times in {time.perf_counter() - began:.0f} s",
                  flush=True)
            from llama_index.core import VectorStoreIndex

            embed, llm = llama_models(urls, model.api_key)
            index = VectorStoreIndex.from_vector_store(ll_store, embed_model=embed)
            hybrid_index = VectorStoreIndex.from_vector_store(hybrid_store, embed_model=embed)
            engine = Engine(url, key, ids["asst"])
            variants = [Floor(ids, urls, model.api_key), LangChainLCEL(urls, model.api_key),
                        LlamaQueryEngine(index, llm), LlamaChatEngine(index, llm), LlamaHybrid(hybrid_index, llm),
                        engine]
            times, chars = measure(variants, corpus.queries(world), turns, warmup, arrivals)
            for variant in variants:
                out.append({"chunks": size, "variant": variant.name, "ms": times[variant.name],
                            "chars": sorted(chars[variant.name])[len(chars[variant.name]) // 2]})
                print(f"turns: {size} chunks, {variant.name}: p50 {pct(times[variant.name], .5):.1f} / "
                      f"p99 {pct(times[variant.name], .99):.1f} ms", flush=True)
            out.append({"chunks": size, "variant": "engine_ms", "ms": engine.engine_ms[warmup:]})
            with psycopg.connect(os.environ["DATABASE_URL"]) as check:
                counts = check.execute(f"""SELECT (SELECT count(*) FROM chunks), (SELECT count(*) FROM
                    langchain_pg_embedding), (SELECT count(*) FROM data_{LLAMA_TABLE}),
                    (SELECT count(*) FROM data_{LLAMA_HYBRID_TABLE})""").fetchone()
            assert counts == (size,) * 4, counts
    finally:
        stop_process(process)


def measure(variants: list[Any], texts: list[str], turns: int, warmup: int,
            arrivals: list[tuple[float, str]]) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """One turn per variant in rotation; each turn's model request is the one arrival that came during it and
    carries its question (every tenth turn starts a new conversation; the others continue one). Also returned:
    the size of each request's messages (JSON characters), to show every variant sent its passages."""
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    sizes: dict[str, list[int]] = {v.name: [] for v in variants}
    for n in range(warmup + turns):
        question = texts[n % len(texts)]
        for variant in variants:
            before = len(arrivals)
            started = time.perf_counter()
            variant.turn(question, n % 10 == 0)
            mine = arrivals[before:]
            assert len(mine) == 1 and json.dumps(question)[1:-1] in mine[0][1], (variant.name, question, mine)
            if n >= warmup:
                times[variant.name].append((mine[0][0] - started) * 1000)
                sizes[variant.name].append(len(mine[0][1]))
    return times, sizes

