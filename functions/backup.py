"""The `backup` job (nightly cron): pg_dump, encrypt, upload to S3, exactly as `backup create`.

Meant for self-hosting (the Docker image has pg_dump 16) or any runner with the PostgreSQL client
tools. A Vercel function has no pg_dump, so there the job fails at once as not retryable, with a
message saying so, instead of being retried for a day. A retry after a real failure writes a new,
complete backup; nothing partial is ever uploaded (the upload is the last step).
"""

from __future__ import annotations

from typing import Any

from shared.core.jobs import JobPayload, NonRetryable


class Payload(JobPayload):
    """Nothing to say: the cron queues {"cron": "backup"}."""


def run(payload: Payload) -> dict[str, Any]:
    from shared.ops import backup

    try:
        made, manifest = backup.create()
    except backup.ToolMissing as exc:
        raise NonRetryable(f"{exc} The nightly backup job needs self-hosting or a runner with pg_dump.",
                           code="backup_tool_missing") from exc
    except backup.NotConfigured as exc:  # retrying cannot help until an operator sets the variable
        raise NonRetryable(str(exc), code="backup_not_configured") from exc
    counts = manifest["row_counts"]
    return {"key": made.key, "bytes": made.size, "tables": len(counts), "rows": sum(counts.values()),
            "seconds": manifest["seconds"]}
