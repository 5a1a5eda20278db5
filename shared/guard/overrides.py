"""Settings an assistant or a workspace overrides (assistants.limits, workspaces.settings): one resolver for the
rate limits (shared.guard.ratelimit) and the daily token budget (shared.guard.spend)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def resolve(name: str, default: int, *overrides: Mapping[str, Any] | None) -> int:
    """The first valid non-negative integer `name` among the overrides (assistant first), else the default."""
    for override in overrides:
        value = (override or {}).get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return default
