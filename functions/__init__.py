"""Job and cron bodies: each module here is one job, with a `Payload` model (extending shared.core.jobs.JobPayload)
and `run(payload: Payload)`. JOBS maps each job's name to them; api/jobs.py hands it to shared.core.jobs.run_job.

Each must be safe to run twice and to be cut off anywhere (a function killed mid-run is run again from
the start by the next QStash retry, see shared/core/jobs.py), and must never assume it runs alone.
Adding a job = its module + its name in NAMES.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache
from importlib import import_module
from typing import Any

from shared.core.jobs import Job

NAMES = ("backup", "build_vector_index", "cleanup", "crawl_source", "eval_batch", "eval_run", "ingest_pages", "ping",
         "poll_crawl",
         "refresh_summaries", "resync_due", "summarize_conversation", "vectorize")


class LazyJobs(Mapping[str, Job[Any]]):
    """name -> Job, each job's module imported the first time it is asked for: a cold start of the jobs
    route loads only the job it runs (and its dependencies), never every job's. Only NAMES can be loaded."""

    def __getitem__(self, name: str) -> Job[Any]:
        if name not in NAMES:
            raise KeyError(name)
        return _load(name)

    def __iter__(self) -> Iterator[str]:
        return iter(NAMES)

    def __len__(self) -> int:
        return len(NAMES)


@cache
def _load(name: str) -> Job[Any]:
    module = import_module(f"{__name__}.{name}")
    return Job(payload=module.Payload, run=module.run)


JOBS = LazyJobs()
