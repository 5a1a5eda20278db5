"""Route dependencies, as `Annotated` aliases a route lists among its parameters (full-stack-fastapi-template's
deps.py): the database session, the caller's key, and the turn clock. Auth itself lives in shared.auth."""

from __future__ import annotations

import time
from typing import Annotated

import psycopg
from fastapi import Depends

from shared.auth import Principal, require_admin, require_key
from shared.db import Row, get_db


async def _clock() -> float:
    from shared.llm.prewarm import prewarm  # only chat routes start this clock

    prewarm()  # a chat turn begins: its model SDKs load in the background while auth and the database run
    return time.perf_counter()


Db = Annotated[psycopg.Connection[Row], Depends(get_db)]
AnyKey = Annotated[Principal, Depends(require_key)]        # any valid key or console session
AdminKey = Annotated[Principal, Depends(require_admin)]    # admin keys and admin members only
# Declared before the key, so a turn's clock (engine_ms, ttft_ms) includes auth.
Started = Annotated[float, Depends(_clock)]
