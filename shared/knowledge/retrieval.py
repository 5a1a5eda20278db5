"""Hybrid retrieval: BM25 over Postgres full text and vector search, fused by reciprocal rank fusion in one
SQL statement.

Keyword search is BM25 over chunks. The query's words are parsed in each of the assistant's languages; each
lexeme's document frequency, the chunk count and the average chunk length come from term_stats, kept per
assistant by triggers on chunks (migration 0006, shared/knowledge/term_stats.py). Candidates are chosen by a ranked
pass that reads no tsvector: the postings of the rarest words, as many words as fit a budget (POSTINGS),
ranked by the summed IDF of the query words a chunk has; plus chunks that have every word. The best
KEYWORD_CANDIDATES of those are scored exactly: per word, idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len /
avglen)), where tf counts a title or heading occurrence HEADING_BOOST times (occurrences are read from
ts_rank, see _occurrences). The score is divided by the summed IDF of all query words (words absent from
the pages included), so keyword_score is absolute: 1.0 when a passage has every word of the query.
Words found in a large share of all chunks (per ANALYZE's statistics) choose no candidates: their posting
lists are the slow part and they say little; they still count in the score.

Vector search runs inside the same statement on pgvector; with Pinecone its (id, score) list is passed in
and joined. Every row is filtered by workspace and assistant.

Fusion weighs each list by the keyword search's absolute evidence (the best passage's keyword_score): when it
is weak (below RESCUE_BELOW: no passage has most of the query's rarer words), vector ranks count as much as
keyword ranks (RRF, k=60), so a question worded unlike the pages is rescued by meaning; when it is strong,
vector ranks count `hybrid_vector_weight` (HYBRID_VECTOR_WEIGHT, default 0: the keyword order stands, vector
matches follow). Equal weights throughout let a weak vector list (the local model; any model on a language
it barely knows) push a passage with every word of the question out of the top 5 (README "Knowledge").
The fused score is divided by its best possible value, so 1.0 means "first in every method that counts".
evidence() is the absolute signal the abstain threshold reads.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from shared.core.db import Row

log = logging.getLogger("dialog_engine.retrieval")

Mode = Literal["keyword", "vector", "hybrid"]
RRF_K = 60
RESCUE_BELOW = 0.5         # keyword evidence under which vector ranks weigh as much as keyword ranks
MAX_QUERY_CHARS = 1000
KEYWORD_CANDIDATES = 100   # per pass (rarest words / all words) scored exactly: each reads a tsvector, ~10 µs
POSTINGS = 4000            # postings of the rarest words ranked before that (no tsvector read: ~1 µs each)
BM25_K1 = 1.2              # tf saturation
BM25_B = 0.75              # length normalisation (chunk length: token_count)
HEADING_BOOST = 2.5        # an occurrence in the page title or a heading counts this many body occurrences
MAX_TERMS = 32
COMMON_SHARE = 0.5          # a word in more than half of all chunks is treated as a stop word ...
COMMON_POSTINGS = 10_000    # ... and so is one in more than this many (its posting list costs milliseconds)
COMMON_TTL_S = 600
MAX_COMMON = 500
EMBED = object()            # retrieve()'s default: embed the query itself
# Per database: (expires at, lexemes). Statistics, not user data, so sharing them across requests is safe.
_common: dict[tuple[str, int, str], tuple[float, list[str]]] = {}


@dataclass(frozen=True)
class Passage:
    chunk_id: str
    source_id: str
    document_id: str
    title: str | None
    url: str | None
    heading_path: str
    text: str
    score: float                      # fused, 0..1
    keyword_rank: int | None = None   # 1 = best; None = not found by that method
    keyword_score: float | None = None  # normalised BM25, 0..1 (see evidence())
    vector_rank: int | None = None
    vector_score: float | None = None  # cosine similarity


def evidence(passages: list[Passage]) -> float:
    """How well the best passage answers the query on an absolute scale (0..1), unlike `score`, which only ranks
    passages against each other (an off-topic question's best passage still scores 1.0).

    The best normalised BM25 score (1.0: a passage has every word of the query, weighted by rarity) whenever
    keyword search found something; cosine similarity only when it found nothing (vector mode, or a question
    sharing no word with the pages). Keyword evidence goes first because a similarity's scale depends on the
    model: small models give unrelated text similarities of 0.5."""
    keyword = [p.keyword_score for p in passages if p.keyword_score is not None]
    if keyword:
        return max(keyword)
    return max((p.vector_score or 0.0 for p in passages), default=0.0)


def effective_mode(mode: Mode) -> Mode:
    """The mode that will really run: without an embeddings API every mode is keyword search."""
    from shared.knowledge.embeddings import embeddings_enabled

    return mode if mode == "keyword" or embeddings_enabled() else "keyword"


def query_words(query: str) -> list[str]:
    """The words of a query (no operators: chat users type questions, not search syntax)."""
    return [w for w in re.findall(r"\w+", query) if w.lower() != "or"][:MAX_TERMS]


def retrieve(conn: psycopg.Connection[Row], *, workspace_id: str, assistant_id: str, query: str,
             top_k: int = 5, min_score: float = 0.0, mode: Mode = "hybrid",
             query_vector: list[float] | None | object = EMBED) -> list[Passage]:
    """The best `top_k` passages of one assistant for `query`, best first, each scoring at least `min_score`.

    `query_vector`: the query's vector when the caller embedded it already, None when that failed (keyword
    search only: never a second wait for an embeddings API that just failed or timed out).
    """
    query = " ".join(query.split())[:MAX_QUERY_CHARS]
    if not query or top_k < 1:
        return []
    mode = effective_mode(mode)
    pool = min(max(top_k * 4, 20), 100)
    params: dict[str, Any] = {"ws": workspace_id, "asst": assistant_id, "text": " ".join(query_words(query)),
                              "k": RRF_K, "min_score": min_score}
    use_keyword = mode in ("keyword", "hybrid")
    vector_cte = EMPTY_VECTOR
    if mode in ("vector", "hybrid"):
        found = _vector_cte(workspace_id, assistant_id, query, pool, params, query_vector)
        if found is None:  # embedding failed: answer from keywords rather than fail the turn
            use_keyword = True
        else:
            vector_cte = found
    if use_keyword:
        params["common"] = common_lexemes(conn)
    both = use_keyword and vector_cte is not EMPTY_VECTOR
    params.update(kw_used=int(use_keyword), vec_used=int(vector_cte is not EMPTY_VECTOR))
    if both:
        from shared.core.settings import get_settings

        params.update(rescue_below=RESCUE_BELOW, strong_vw=get_settings().hybrid_vector_weight)
    # Limits are inlined (plain ints) so a cached generic plan still knows them and keeps the indexes.
    sql = ("WITH " + (KEYWORD if use_keyword else EMPTY_KEYWORD) + ",\n" + vector_cte + ",\n" + FUSE).format(
        kw_pool=KEYWORD_CANDIDATES, postings=POSTINGS, k1=BM25_K1, b=BM25_B, heading_boost=HEADING_BOOST,
        occurrences_every=_occurrences("{1,1,1,1}"), occurrences_heading=_occurrences("{0,0,0,1}"),
        pool=int(pool), top_k=int(top_k), vector_weight=EVIDENCE_WEIGHT if both else "1.0::float8")
    rows = conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()
    return [Passage(**row) for row in rows]


def _occurrences(weights: str) -> str:
    """SQL for how often lexeme t.q occurs in d.tsv, from ts_rank of that one lexeme with all weights 1 (or with
    only A, title and heading, weighted 1: their positions come first in the tsvector).

    ts_rank adds 1/j² for the lexeme's j-th position and divides by the limit of that series (pi²/6), so the
    rank is H(n)/(pi²/6) with H(n) = sum of 1/j² for j <= n; the rest of the series, pi²/6 - H(n), is close
    to 1/(n + 1/2), which gives n back exactly (up to 255, the most positions a tsvector keeps per lexeme),
    and 0 for a rank of 0."""
    rank = "ts_rank('" + weights + "', d.tsv, t.q)::float8"
    return f"greatest(0, round(1 / (1.6449340668 * (1 - {rank})) - 0.5))"


def common_lexemes(conn: psycopg.Connection[Row]) -> list[str]:
    """Lexemes in a large share of all chunks, from ANALYZE's statistics; cached per process for a while.

    Looked up apart from the search statement (its view costs a millisecond of planning on every
    query) and at most every COMMON_TTL_S, so a warm instance pays nothing for it.
    """
    database = (conn.info.host, conn.info.port, conn.info.dbname)
    expires, lexemes = _common.get(database, (0.0, []))
    if time.monotonic() < expires:
        return lexemes
    try:
        rows = conn.cursor(row_factory=dict_row).execute(COMMON_LEXEMES, {
            "share": COMMON_SHARE, "postings": COMMON_POSTINGS, "limit": MAX_COMMON}).fetchall()
        lexemes = [r["lexeme"] for r in rows]
    except psycopg.Error as exc:  # statistics unreadable: search still works, common words cost more
        log.warning("reading text statistics failed: %s", type(exc).__name__)
        lexemes = []
    _common[database] = (time.monotonic() + COMMON_TTL_S, lexemes)
    return lexemes


def _vector_cte(workspace_id: str, assistant_id: str, query: str, pool: int, params: dict[str, Any],
                query_vector: list[float] | None | object = EMBED) -> str | None:
    from shared.knowledge.embeddings import embed_query
    from shared.knowledge.vectors import get_vector_store

    vector: list[float] | None
    if query_vector is EMBED:
        try:
            vector = embed_query(query)
        except Exception as exc:  # any provider error: keyword search still answers
            log.warning("query embedding failed, keyword search only: %s", type(exc).__name__)
            return None
    else:
        vector = query_vector  # type: ignore[assignment]  # list or None, per the signature
    if vector is None:
        return None
    store = get_vector_store()
    if store.name == "pgvector":
        from shared.knowledge.vectors.pgvector import PgVector

        params["vec"] = PgVector(vector)
        return PGVECTOR
    try:
        matches = store.query(workspace_id, assistant_id, vector, pool)
    except Exception as exc:  # the vector service is down: keyword search still answers
        log.warning("vector query failed, keyword search only: %s", type(exc).__name__)
        return None
    params["vids"] = [m[0] for m in matches]
    params["vscores"] = [m[1] for m in matches]
    return EXTERNAL_VECTOR


# Languages come from the assistant's sources: the configuration a source names (validated against
# pg_ts_config when it was added) and those its pages were indexed in (sources.languages, kept at ingest;
# a source that names none, 'auto', has each page's language detected). A CTE of its own: only it says where from.
LANGS = """
langs AS (
    SELECT DISTINCT l.name::regconfig AS cfg
    FROM sources s CROSS JOIN LATERAL unnest(s.languages || s.language) AS l(name)
    WHERE s.workspace_id = %(ws)s AND s.assistant_id = %(asst)s AND l.name <> 'auto')"""

# BM25 over chunks (see the module docstring). Statistics are sums over the term_stats ledger (its '' lexeme
# holds the chunk count and summed length). A term's tf is ts_rank's weight of that one lexeme: it grows
# with each occurrence and saturates, and counts a title/heading occurrence (weight A) 2.5 times a body one.
KEYWORD = LANGS + r""",
corpus AS (
    SELECT l.cfg, sum(t.chunks)::float8 AS n, sum(t.tokens)::float8 / sum(t.chunks) AS avgdl
    FROM langs l JOIN term_stats t ON t.workspace_id = %(ws)s AND t.assistant_id = %(asst)s
                                  AND t.lexeme = '' AND t.language = l.cfg
    GROUP BY l.cfg HAVING sum(t.chunks) > 0),
terms AS (
    SELECT k.cfg, k.lexeme, k.df, k.avgdl, k.lexeme = ANY(%(common)s::text[]) AS common,
           ln(1 + (k.n - k.df + 0.5) / (k.df + 0.5)) AS idf,
           ('''' || replace(replace(k.lexeme, '\', '\\'), '''', '''''') || '''')::tsquery AS q
    FROM (SELECT c.cfg, c.n, c.avgdl, x.lexeme,
                 coalesce((SELECT sum(t.chunks) FROM term_stats t
                           WHERE t.workspace_id = %(ws)s AND t.assistant_id = %(asst)s AND t.lexeme = x.lexeme
                             AND t.language = c.cfg), 0)::float8 AS df
          FROM corpus c CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector(c.cfg, %(text)s))) AS x(lexeme)) k),
evidence AS (  -- per language, what a passage scores at most for this query (the normaliser)
    SELECT cfg, sum(idf) AS total, string_agg(q::text, ' & ') FILTER (WHERE NOT common AND df > 0)::tsquery AS every,
           sum(df) FILTER (WHERE NOT common) AS postings
    FROM terms GROUP BY cfg),
picked AS (  -- the rarest words first, while their postings fit the budget (always the rarest one)
    SELECT * FROM (
        SELECT t.*, sum(t.df) OVER w AS postings, row_number() OVER w AS n FROM terms t
        WHERE NOT t.common AND t.df > 0 WINDOW w AS (PARTITION BY t.cfg ORDER BY t.df, t.lexeme)) r
    WHERE r.postings <= {postings} OR r.n = 1),
kw_candidates AS (  -- ranked without reading a tsvector: by how rare the words are that a chunk has
    SELECT id, min(cfg::text)::regconfig AS cfg FROM (
        (SELECT p.id, p.language AS cfg, sum(t.idf) AS prescore, min(p.token_count) AS len
         FROM picked t CROSS JOIN LATERAL (
             SELECT c.id, c.language, c.token_count FROM chunks c
             WHERE c.workspace_id = %(ws)s AND c.assistant_id = %(asst)s AND c.language = t.cfg AND c.tsv @@ t.q
             LIMIT {postings}) p
         GROUP BY p.id, p.language ORDER BY prescore DESC, len, p.id LIMIT {kw_pool})
        UNION ALL
        (SELECT a.id, a.language, e.total, a.token_count
         FROM evidence e CROSS JOIN LATERAL (  -- lateral: one GIN scan per language, never a join over chunks
             SELECT c.id, c.language, c.token_count FROM chunks c
             WHERE c.workspace_id = %(ws)s AND c.assistant_id = %(asst)s AND c.language = e.cfg
               AND c.tsv @@ e.every LIMIT {kw_pool}) a
         WHERE e.every IS NOT NULL AND e.postings > {postings} LIMIT {kw_pool})  -- else the first pass had all
    ) found GROUP BY id),
kw_scored AS MATERIALIZED (
    SELECT k.id, ((
               -- idf * tf * (k1 + 1) / (tf + K), written with each ts_rank once (the planner inlines these)
               SELECT sum(t.idf * (1 + {k1}) * (1 - l.k / (o.tf + l.k)))
               FROM terms t
               CROSS JOIN LATERAL (SELECT {k1} * (1 - {b} + {b} * c.token_count / t.avgdl) AS k) l
               CROSS JOIN LATERAL (SELECT {occurrences_every} + ({heading_boost} - 1) * {occurrences_heading} AS tf) o
               WHERE t.cfg = k.cfg) / e.total)::float8 AS score
    FROM kw_candidates k JOIN chunks c ON c.id = k.id JOIN evidence e ON e.cfg = k.cfg
    -- the tsvector read (detoasted) once per chunk, not once per ts_rank call: "|| ''" makes a plain copy
    CROSS JOIN LATERAL (SELECT c.tsv || ''::tsvector AS tsv OFFSET 0) d
    WHERE c.workspace_id = %(ws)s AND c.assistant_id = %(asst)s),
kw AS (
    SELECT id, least(score, 1.0) AS score, row_number() OVER (ORDER BY score DESC, id) AS rank
    FROM kw_scored WHERE score > 0 ORDER BY rank LIMIT {pool})"""

COMMON_LEXEMES = """
    SELECT e.lexeme
    FROM pg_stats s JOIN pg_class t ON t.oid = 'chunks'::regclass,
         unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS e(lexeme, freq)
    WHERE s.schemaname = current_schema() AND s.tablename = 'chunks' AND s.attname = 'tsv'
      AND e.lexeme IS NOT NULL AND (e.freq > %(share)s OR e.freq * t.reltuples > %(postings)s)
    ORDER BY e.freq DESC LIMIT %(limit)s"""

EMPTY_KEYWORD = "kw AS (SELECT NULL::text AS id, NULL::float8 AS score, NULL::bigint AS rank WHERE false)"

# The HNSW index serves ORDER BY embedding <=> vector; pgvector returns at most hnsw.ef_search (40) rows.
PGVECTOR = """
vec AS (
    SELECT id, (1 - dist)::float8 AS score, row_number() OVER (ORDER BY dist, id) AS rank
    FROM (SELECT id, embedding <=> %(vec)b::vector AS dist FROM chunks
          WHERE workspace_id = %(ws)s AND assistant_id = %(asst)s AND embedding IS NOT NULL
          ORDER BY embedding <=> %(vec)b::vector LIMIT {pool}) nearest)"""

# Matches from an external store, kept only when their chunk row exists in this workspace and assistant
# (a vector whose chunk was deleted is an orphan, never a result) and ranked again without the orphans.
EXTERNAL_VECTOR = """
vec AS (
    SELECT v.id, v.score, row_number() OVER (ORDER BY v.n) AS rank
    FROM unnest(%(vids)s::text[], %(vscores)s::float8[]) WITH ORDINALITY AS v(id, score, n)
    JOIN chunks c ON c.id = v.id AND c.workspace_id = %(ws)s AND c.assistant_id = %(asst)s)"""

EMPTY_VECTOR = "vec AS (SELECT NULL::text AS id, NULL::float8 AS score, NULL::bigint AS rank WHERE false)"

# The vector list's weight follows the keyword evidence (see the module docstring): one value per search, read
# from the materialised kw_scored (kw stays a single-use CTE the planner inlines); with one list it is a
# constant (that list's own ranks decide). Ties (a zero vector weight) keep the keyword order, then the vector's.
EVIDENCE_WEIGHT = """(SELECT CASE WHEN coalesce(max(score), 0) < %(rescue_below)s THEN 1.0 ELSE %(strong_vw)s END
            FROM kw_scored)::float8"""

FUSE = """
joined AS (
    SELECT coalesce(kw.id, vec.id) AS id, kw.rank AS keyword_rank, kw.score AS keyword_score,
           vec.rank AS vector_rank, vec.score AS vector_score,
           coalesce(1.0::float8 / (%(k)s + kw.rank), 0) AS kw_rrf,
           coalesce(1.0::float8 / (%(k)s + vec.rank), 0) AS vec_rrf,
           {vector_weight} AS vw
    FROM kw FULL JOIN vec ON vec.id = kw.id),
fused AS (
    SELECT id, keyword_rank, keyword_score, vector_rank, vector_score,
           (kw_rrf + vw * vec_rrf) * (%(k)s + 1) / (%(kw_used)s + vw * %(vec_used)s) AS score
    FROM joined),
best AS (
    SELECT * FROM fused WHERE score >= %(min_score)s
    ORDER BY score DESC, keyword_rank NULLS LAST, vector_rank NULLS LAST, id LIMIT {top_k})
SELECT c.id AS chunk_id, c.source_id, c.document_id, c.title, c.url, c.heading_path, c.text,
       f.score, f.keyword_rank, f.keyword_score, f.vector_rank, f.vector_score
FROM best f JOIN chunks c ON c.id = f.id AND c.workspace_id = %(ws)s AND c.assistant_id = %(asst)s
ORDER BY f.score DESC, f.keyword_rank NULLS LAST, f.vector_rank NULLS LAST, f.id"""
