"""A chat turn's clock, as a route dependency: declared before the key, so the turn's timings (engine_ms,
ttft_ms) include auth; starting it also starts the instance's warm-up for its first turn (shared.dialog.warmup)
when the function's lifespan did not."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends


async def _clock() -> float:
    from shared.dialog.warmup import warm_up  # only chat routes start this clock

    warm_up()  # a no-op after the first call: the lifespan or an earlier turn started it
    return time.perf_counter()


Started = Annotated[float, Depends(_clock)]
