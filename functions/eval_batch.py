"""The `eval_batch` job: run a batch of an evaluation run's cases through the turn engine and store each
result; the batch that leaves no case open computes the run's metrics (shared/evals/runner.py).

A case is claimed before it runs and stored only under that claim, so duplicated deliveries and a retry
after a killed attempt never run or count a finished case twice."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from shared.core.jobs import JobPayload
from shared.evals.runner import run_batch


class Payload(JobPayload):
    workspace_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1, max_length=100)
    case_ids: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(min_length=1, max_length=50)


def run(payload: Payload) -> dict[str, Any]:
    return run_batch(payload.workspace_id, payload.run_id, list(payload.case_ids))
