"""`pinecone create-index` (serverless, cosine, the embedding model's dimension) and `pinecone configure`.

The control plane is https://api.pinecone.io; PINECONE_CONTROLLER_HOST (read by the SDK) points it
elsewhere, e.g. at a local stand-in. Nothing here writes a secret anywhere: `configure` checks the
index and prints the PINECONE_HOST value to set, which saves a lookup on every cold start.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(groups: argparse._SubParsersAction) -> None:
    pc = groups.add_parser("pinecone", help="Pinecone index setup").add_subparsers(dest="command", required=True)
    create = pc.add_parser("create-index", help="create the serverless index (safe to run again)")
    create.add_argument("--name", help="index name (default: PINECONE_INDEX)")
    create.add_argument("--wait", type=int, default=300, help="seconds to wait until it is ready (default 300)")
    create.set_defaults(func=cmd_create_index)
    configure = pc.add_parser("configure", help="check the index matches our settings and print its host")
    configure.add_argument("--name", help="index name (default: PINECONE_INDEX)")
    configure.set_defaults(func=cmd_configure)


def _client() -> Any:
    from shared.core.settings import get_settings
    from shared.knowledge.vectors.pinecone_store import control_plane

    settings = get_settings()
    if not settings.pinecone_api_key:
        raise LookupError("PINECONE_API_KEY is not set (in .env or the Vercel project's environment)")
    return control_plane(settings.pinecone_api_key)


def _mismatches(model: Any) -> list[str]:
    """What about an existing index disagrees with our settings (an index's dimension can't change)."""
    from shared.core.settings import get_settings

    settings = get_settings()
    problems = []
    if model.dimension != settings.embedding_dimensions:
        problems.append(f"dimension is {model.dimension}, EMBEDDING_DIMENSIONS is {settings.embedding_dimensions}")
    if str(model.metric).lower() != "cosine":
        problems.append(f"metric is {model.metric}, we need cosine")
    return problems


def cmd_create_index(args: argparse.Namespace) -> int:
    from pinecone import ServerlessSpec

    from shared.core.settings import get_settings

    settings = get_settings()
    name = args.name or settings.pinecone_index
    pc = _client()
    if pc.has_index(name):
        model = pc.describe_index(name)
        problems = _mismatches(model)
        print(f"index {name} already exists (host {model.host})")
        for problem in problems:
            print(f"error: {problem}; delete it or use another PINECONE_INDEX", file=sys.stderr)
        return 1 if problems else 0
    spec = ServerlessSpec(cloud=settings.pinecone_cloud, region=settings.pinecone_region)
    print(f"creating index {name}: serverless {settings.pinecone_cloud}/{settings.pinecone_region}, "
          f"dimension {settings.embedding_dimensions} ({settings.embedding_model}), cosine")
    model = pc.create_index(name=name, spec=spec, dimension=settings.embedding_dimensions, metric="cosine",
                            timeout=args.wait)
    print(f"ready: host {model.host}")
    print(f"set PINECONE_HOST={model.host} to skip the host lookup on cold starts")
    return 0


def cmd_configure(args: argparse.Namespace) -> int:
    from shared.core.settings import get_settings
    from shared.knowledge.vectors.pinecone_store import PineconeStore

    settings = get_settings()
    name = args.name or settings.pinecone_index
    pc = _client()
    if not pc.has_index(name):
        print(f"error: no index {name}; run `python -m scripts pinecone create-index`", file=sys.stderr)
        return 1
    model = pc.describe_index(name)
    problems = _mismatches(model)
    if not model.status.ready:
        problems.append(f"index is not ready yet (state {model.status.state})")
    if settings.pinecone_host and settings.pinecone_host.rstrip("/") not in (model.host, model.host.split("://")[-1]):
        problems.append(f"PINECONE_HOST is {settings.pinecone_host} but the index lives at {model.host}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    store = PineconeStore(settings.pinecone_api_key or "", name, model.host)
    print(f"index {name}: {store.health()}")
    print(f"backend in use: {settings.resolved_vector_backend} (VECTOR_BACKEND={settings.vector_backend or 'unset'})")
    print(f"PINECONE_HOST={model.host}")
    return 0
