"""A chat turn's clock, as a route dependency: declared before the key, so the turn's timings (engine_ms,
ttft_ms) include auth; starting it also starts preparing the turn's model clients (shared.llm.prewarm)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends


async def _clock() -> float:
    from shared.llm.prewarm import prewarm  # only chat routes start this clock

    prewarm()  # a chat turn begins: its model clients get ready in the background while auth and the database run
    return time.perf_counter()


Started = Annotated[float, Depends(_clock)]
