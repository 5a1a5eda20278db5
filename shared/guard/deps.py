"""Route dependencies, as `Annotated` aliases a route lists among its parameters (full-stack-fastapi-template's
deps.py): the database session and the caller's key (a chat turn's clock is shared.dialog.clock). Auth itself
lives in shared.guard.auth."""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import Depends

from shared.core.db import Row, get_db
from shared.guard.auth import Principal, require_admin, require_key

Db = Annotated[psycopg.Connection[Row], Depends(get_db)]
AnyKey = Annotated[Principal, Depends(require_key)]        # any valid key or console session
AdminKey = Annotated[Principal, Depends(require_admin)]    # admin keys and admin members only
