"""The local stack's embedding model speaks OpenAI's /v1/embeddings: the official SDK gets the same vectors as
floats and as base64, `dimensions` shortens them, bad requests get OpenAI-shaped 400s, and the vectors carry
meaning (a paraphrase is nearer its passage than unrelated text is)."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

PASSAGES = [
    "To reset your password, open Settings, choose Security and click Reset password.",
    "Invoices are sent monthly by email and can be downloaded as PDF files.",
    "Our office is closed on public holidays and weekends.",
]


@pytest.fixture(scope="module")
def client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.local.embeddings_url, api_key="unused", max_retries=0, timeout=30)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_the_sdk_gets_unit_vectors_in_order_as_floats_and_as_base64(client) -> None:
    floats = client.embeddings.create(input=PASSAGES, model="wordllama-l2-supercat", encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1, 2]
    assert all(len(d.embedding) == 256 for d in floats.data)
    assert all(math.isclose(math.sqrt(cosine(d.embedding, d.embedding)), 1.0, rel_tol=1e-5) for d in floats.data)
    assert floats.model == "wordllama-l2-supercat" and floats.usage.prompt_tokens > 10

    # The SDK's default asks for base64 and decodes it: the same vectors.
    default = client.embeddings.create(input=PASSAGES, model="wordllama-l2-supercat")
    for a, b in zip(floats.data, default.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    raw = client.embeddings.create(input=PASSAGES[0], model="wordllama-l2-supercat", encoding_format="base64")
    assert isinstance(raw.data[0].embedding, str)  # asked for explicitly: left encoded, little-endian float32
    import array
    import base64

    decoded = array.array("f", base64.b64decode(raw.data[0].embedding)).tolist()
    assert decoded == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_dimensions_gives_the_normalised_prefix(client) -> None:
    full = client.embeddings.create(input="hello there", model="m", encoding_format="float").data[0].embedding
    short = client.embeddings.create(input="hello there", model="m", dimensions=64,
                                     encoding_format="float").data[0].embedding
    assert len(short) == 64
    norm = math.sqrt(sum(v * v for v in full[:64]))
    assert short == pytest.approx([v / norm for v in full[:64]], abs=1e-5)


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "x", "model": "m", "dimensions": 512}, "dimensions"),
    ({"input": "", "model": "m"}, "input"),
    ({"input": [[1, 2, 3]], "model": "m"}, "input"),
    ({"input": ["x"] * 2049, "model": "m"}, "input"),
    ({"input": "x"}, "model"),
    ({"input": "x", "model": "m", "encoding_format": "int8"}, "encoding_format"),
])
def test_bad_requests_get_openai_shaped_400s(stack, body, param) -> None:
    reply = httpx.post(f"{stack.local.embeddings_url}/embeddings", json=body, timeout=30)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]


def test_the_sdk_raises_its_bad_request_error_naming_the_limit(client) -> None:
    with pytest.raises(openai.BadRequestError, match="EMBEDDING_DIMENSIONS=256"):
        client.embeddings.create(input="x", model="m", dimensions=1536)


def test_a_paraphrase_is_nearest_its_passage(client) -> None:
    question = "I forgot my login credentials, how do I get back into my account?"
    vectors = [d.embedding for d in client.embeddings.create(input=[question, *PASSAGES], model="m").data]
    scores = [cosine(vectors[0], v) for v in vectors[1:]]
    assert scores.index(max(scores)) == 0, scores


def test_e5_gives_384_unit_vectors_and_reads_its_prefixes(client) -> None:
    def vector(text: str) -> list[float]:
        return client.embeddings.create(input=text, model="multilingual-e5-small",
                                        encoding_format="float").data[0].embedding

    bare, as_query, as_passage = (vector(t) for t in ("Bild skalieren", "query: Bild skalieren",
                                                      "passage: Bild skalieren"))
    assert len(bare) == 384 and math.isclose(cosine(bare, bare), 1.0, rel_tol=1e-5)
    assert bare == pytest.approx(as_query, abs=1e-6)        # no prefix: embedded as a query, the prefix not read twice
    assert cosine(as_query, as_passage) < 0.999              # a passage is embedded as one
    reply = client.embeddings.create(input=["query: a", "passage: b", "c"], model="multilingual-e5-small")
    assert reply.model == "multilingual-e5-small" and [d.index for d in reply.data] == [0, 1, 2]


def test_e5_refuses_a_shortened_vector_naming_its_size(client) -> None:
    with pytest.raises(openai.BadRequestError, match="EMBEDDING_DIMENSIONS=384"):
        client.embeddings.create(input="x", model="multilingual-e5-small", dimensions=256)


def test_a_german_question_is_nearest_its_german_passage_with_e5(client) -> None:
    passages = ["passage: Um Ihr Kennwort zurückzusetzen, öffnen Sie Einstellungen und dann Sicherheit.",
                "passage: Rechnungen kommen monatlich per E-Mail und als PDF.",
                "passage: An Feiertagen ist unser Büro geschlossen."]
    question = "query: Ich habe meine Zugangsdaten vergessen. Wie komme ich wieder in mein Konto?"
    vectors = [d.embedding for d in client.embeddings.create(input=[question, *passages],
                                                             model="multilingual-e5-small").data]
    scores = [cosine(vectors[0], v) for v in vectors[1:]]
    assert scores.index(max(scores)) == 0, scores
