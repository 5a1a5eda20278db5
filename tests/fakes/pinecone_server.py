"""A stand-in for Pinecone's REST API: control plane and the data plane of each index on ONE server.

Control plane: POST /indexes, GET /indexes, GET|DELETE /indexes/{name}; an index's `host` points back at
this server under /data/{name} (the SDK appends data-plane paths to the host, so a path prefix works).
Data plane: /vectors/upsert, /query, /vectors/delete, /describe_index_stats, /vectors/list, /vectors/fetch.
Limits enforced with 400s: 1,000 records and 2 MB per upsert, 40 KB metadata without nulls, 1,000 ids per
delete, matching dimension. Every call needs the Api-Key header.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MAX_UPSERT_RECORDS = 1000
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_DELETE_IDS = 1000
MAX_TOP_K = 10_000


class FakePinecone:
    """Serve `app`, then call `bind(url)` so index hosts point back here; `requests` logs data-plane calls."""

    def __init__(self, api_key: str = "pc-test-key") -> None:
        self.api_key = api_key
        self.base_url = ""
        self.indexes: dict[str, dict[str, Any]] = {}
        # index name -> namespace -> id -> {"values", "metadata"}
        self.data: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self.requests: list[tuple[str, int]] = []  # (path, body bytes)
        self._lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/indexes", self.create_index, methods=["POST"]),
            Route("/indexes", self.list_indexes, methods=["GET"]),
            Route("/indexes/{name}", self.describe_index, methods=["GET"]),
            Route("/indexes/{name}", self.delete_index, methods=["DELETE"]),
            Route("/data/{name}/vectors/upsert", self.upsert, methods=["POST"]),
            Route("/data/{name}/query", self.query, methods=["POST"]),
            Route("/data/{name}/vectors/delete", self.delete, methods=["POST"]),
            Route("/data/{name}/describe_index_stats", self.stats, methods=["POST", "GET"]),
            Route("/data/{name}/vectors/list", self.list_vectors, methods=["GET"]),
            Route("/data/{name}/vectors/fetch", self.fetch, methods=["GET"]),
        ])

    def bind(self, url: str) -> None:
        self.base_url = url.rstrip("/")

    def host(self, name: str) -> str:
        return f"{self.base_url}/data/{name}"

    def vectors(self, name: str, namespace: str) -> dict[str, dict[str, Any]]:
        return self.data.get(name, {}).get(namespace, {})

    # -- control plane ---------------------------------------------------------------------------------

    async def create_index(self, request: Request) -> Response:
        if (denied := self._check_key(request)) is not None:
            return denied
        body = await request.json()
        name = body.get("name")
        if not name:
            return _control_error(400, "INVALID_ARGUMENT", "name is required")
        if name in self.indexes:
            return _control_error(409, "ALREADY_EXISTS", f"Resource {name} already exists")
        schema = body.get("schema")
        if schema is None:  # the pre-2026 body: dimension, metric, spec.serverless
            schema = {"fields": {"_values": {"type": "dense_vector", "dimension": body.get("dimension"),
                                             "metric": body.get("metric", "cosine")}}}
        deployment = body.get("deployment")
        if deployment is None:
            serverless = (body.get("spec") or {}).get("serverless") or {}
            deployment = {"deployment_type": "managed", "cloud": serverless.get("cloud"),
                          "region": serverless.get("region")}
        field = (schema.get("fields") or {}).get("_values") or {}
        if not isinstance(field.get("dimension"), int) or field.get("type") != "dense_vector":
            return _control_error(400, "INVALID_ARGUMENT", "a dense index needs a dimension")
        model = {"name": name, "host": self.host(name), "schema": schema, "deployment": deployment,
                 "deletion_protection": body.get("deletion_protection", "disabled"), "tags": body.get("tags"),
                 "status": {"ready": True, "state": "Ready"}}
        with self._lock:
            self.indexes[name] = model
            self.data[name] = {}
        return JSONResponse(model, status_code=201)

    async def list_indexes(self, request: Request) -> Response:
        if (denied := self._check_key(request)) is not None:
            return denied
        return JSONResponse({"indexes": list(self.indexes.values())})

    async def describe_index(self, request: Request) -> Response:
        if (denied := self._check_key(request)) is not None:
            return denied
        model = self.indexes.get(request.path_params["name"])
        if model is None:
            return _control_error(404, "NOT_FOUND", f"Resource {request.path_params['name']} not found")
        return JSONResponse(model)

    async def delete_index(self, request: Request) -> Response:
        if (denied := self._check_key(request)) is not None:
            return denied
        with self._lock:
            if self.indexes.pop(request.path_params["name"], None) is None:
                return _control_error(404, "NOT_FOUND", "Resource not found")
            self.data.pop(request.path_params["name"], None)
        return Response(status_code=202)

    # -- data plane ------------------------------------------------------------------------------------

    async def upsert(self, request: Request) -> Response:
        index, body, denied = await self._data_request(request)
        if denied is not None:
            return denied
        vectors = body.get("vectors") or []
        if len(vectors) > MAX_UPSERT_RECORDS:
            return _data_error(400, f"Batch size exceeds {MAX_UPSERT_RECORDS}; got {len(vectors)} vectors")
        dimension = index["schema"]["fields"]["_values"]["dimension"]
        for vector in vectors:
            values, metadata = vector.get("values") or [], vector.get("metadata") or {}
            if len(values) != dimension:
                return _data_error(400, f"Vector dimension {len(values)} does not match the dimension of the "
                                        f"index {dimension}")
            if any(v is None for v in metadata.values()):
                return _data_error(400, "Metadata value must be a string, number, boolean or list of "
                                        "strings, got 'null'")
            if len(_json_bytes(metadata)) > MAX_METADATA_BYTES:
                return _data_error(400, f"Metadata size exceeds the limit of {MAX_METADATA_BYTES} bytes")
        namespace = body.get("namespace") or ""
        with self._lock:
            space = self.data.setdefault(index["name"], {}).setdefault(namespace, {})
            for vector in vectors:
                space[vector["id"]] = {"values": vector["values"], "metadata": vector.get("metadata") or {}}
        return JSONResponse({"upsertedCount": len(vectors)})

    async def query(self, request: Request) -> Response:
        index, body, denied = await self._data_request(request)
        if denied is not None:
            return denied
        top_k = body.get("topK")
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            return _data_error(400, f"topK must be between 1 and {MAX_TOP_K}")
        namespace = body.get("namespace") or ""
        space = self.vectors(index["name"], namespace)
        query = body.get("vector")
        if query is None and body.get("id"):
            query = (space.get(body["id"]) or {}).get("values")
        if not query:
            return _data_error(400, "No query provided")
        flt = body.get("filter")
        scored = [(vid, _cosine(query, item["values"]), item) for vid, item in space.items()
                  if flt is None or _matches(item["metadata"], flt)]
        scored.sort(key=lambda s: -s[1])
        matches = []
        for vid, score, item in scored[:top_k]:
            match: dict[str, Any] = {"id": vid, "score": score}
            if body.get("includeValues"):
                match["values"] = item["values"]
            if body.get("includeMetadata"):
                match["metadata"] = item["metadata"]
            matches.append(match)
        return JSONResponse({"matches": matches, "namespace": namespace, "usage": {"readUnits": 1}})

    async def delete(self, request: Request) -> Response:
        index, body, denied = await self._data_request(request)
        if denied is not None:
            return denied
        namespace = body.get("namespace") or ""
        ids, flt, everything = body.get("ids"), body.get("filter"), body.get("deleteAll")
        if sum(x is not None and x is not False for x in (ids, flt, everything)) != 1:
            return _data_error(400, "Exactly one of ids, filter or deleteAll must be given")
        if ids is not None and len(ids) > MAX_DELETE_IDS:
            return _data_error(400, f"Delete request exceeds {MAX_DELETE_IDS} ids")
        with self._lock:
            space = self.data.get(index["name"], {}).get(namespace)
            if space is None:  # like serverless Pinecone: a namespace never written to is not found
                return _data_error(404, "Namespace not found", code=5)
            if everything:
                space.clear()
            elif ids is not None:
                for vid in ids:
                    space.pop(vid, None)
            else:
                for vid in [v for v, item in space.items() if _matches(item["metadata"], flt)]:
                    del space[vid]
        return JSONResponse({})

    async def stats(self, request: Request) -> Response:
        index, _, denied = await self._data_request(request)
        if denied is not None:
            return denied
        spaces = self.data.get(index["name"], {})
        field = index["schema"]["fields"]["_values"]
        return JSONResponse({"namespaces": {ns: {"vectorCount": len(v)} for ns, v in spaces.items()},
                             "dimension": field["dimension"], "indexFullness": 0.0, "metric": field.get("metric"),
                             "vectorType": "dense", "totalVectorCount": sum(len(v) for v in spaces.values())})

    async def list_vectors(self, request: Request) -> Response:
        index, _, denied = await self._data_request(request, read_body=False)
        if denied is not None:
            return denied
        namespace = request.query_params.get("namespace", "")
        prefix = request.query_params.get("prefix", "")
        limit = int(request.query_params.get("limit", "100"))
        start = int(request.query_params.get("paginationToken") or 0)
        ids = sorted(v for v in self.vectors(index["name"], namespace) if v.startswith(prefix))
        page = ids[start:start + limit]
        reply: dict[str, Any] = {"vectors": [{"id": v} for v in page], "namespace": namespace,
                                 "usage": {"readUnits": 1}}
        if start + limit < len(ids):
            reply["pagination"] = {"next": str(start + limit)}
        return JSONResponse(reply)

    async def fetch(self, request: Request) -> Response:
        index, _, denied = await self._data_request(request, read_body=False)
        if denied is not None:
            return denied
        namespace = request.query_params.get("namespace", "")
        space = self.vectors(index["name"], namespace)
        found = {vid: {"id": vid, **space[vid]} for vid in request.query_params.getlist("ids") if vid in space}
        return JSONResponse({"vectors": found, "namespace": namespace, "usage": {"readUnits": 1}})

    # -- helpers ---------------------------------------------------------------------------------------

    def _check_key(self, request: Request) -> Response | None:
        if request.headers.get("api-key") != self.api_key:
            return JSONResponse({"error": {"code": "UNAUTHENTICATED", "message": "Invalid API Key"},
                                 "status": 401}, status_code=401)
        return None

    async def _data_request(self, request: Request,
                            read_body: bool = True) -> tuple[dict[str, Any], dict[str, Any], Response | None]:
        denied = self._check_key(request)
        index = self.indexes.get(request.path_params["name"], {})
        if denied is None and not index:
            denied = _data_error(404, "Index not found", code=5)
        raw = await request.body() if read_body else b""
        self.requests.append((request.url.path.split("/data/" + request.path_params["name"], 1)[-1], len(raw)))
        if denied is None and len(raw) > MAX_REQUEST_BYTES:
            denied = _data_error(400, f"Request size {len(raw)} bytes exceeds the maximum of "
                                      f"{MAX_REQUEST_BYTES} bytes")
        if denied is not None:
            return index, {}, denied
        return index, (json.loads(raw) if raw else {}), None


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _matches(metadata: dict[str, Any], flt: dict[str, Any]) -> bool:
    """Pinecone's filter language: $eq $ne $in $nin $gt $gte $lt $lte $exists, $and / $or, bare values = $eq."""
    for key, condition in flt.items():
        if key == "$and":
            if not all(_matches(metadata, f) for f in condition):
                return False
        elif key == "$or":
            if not any(_matches(metadata, f) for f in condition):
                return False
        elif not _field_matches(metadata, key, condition if isinstance(condition, dict) else {"$eq": condition}):
            return False
    return True


def _field_matches(metadata: dict[str, Any], key: str, ops: dict[str, Any]) -> bool:
    present, value = key in metadata, metadata.get(key)
    values = value if isinstance(value, list) else [value]
    for op, arg in ops.items():
        if op == "$eq":
            ok = present and arg in values
        elif op == "$ne":
            ok = arg not in values
        elif op == "$in":
            ok = present and any(v in arg for v in values)
        elif op == "$nin":
            ok = not any(v in arg for v in values)
        elif op == "$exists":
            ok = present == bool(arg)
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            ok = present and {"$gt": value > arg, "$gte": value >= arg, "$lt": value < arg,
                              "$lte": value <= arg}[op]
        else:
            ok = False
        if not ok:
            return False
    return True


def _control_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}, "status": status}, status_code=status)


def _data_error(status: int, message: str, code: int = 3) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "details": []}, status_code=status)
