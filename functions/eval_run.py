"""The `eval_run` job: start (or resume) an evaluation run by publishing an `eval_batch` job per batch of
open cases (shared/evals/runner.py). Safe to run twice: a second fan-out only re-publishes open cases,
which the batches claim at most once."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.core.jobs import JobPayload
from shared.evals.runner import fan_out


class Payload(JobPayload):
    workspace_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1, max_length=100)


def run(payload: Payload) -> dict[str, Any]:
    return fan_out(payload.workspace_id, payload.run_id)
