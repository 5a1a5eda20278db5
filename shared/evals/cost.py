"""What a case's tokens cost, in US dollars, from list prices per million tokens (input, output).

Prices change; a model missing here has no cost (the run counts such cases as `cost_unknown_cases` rather
than guessing), the offline answerer costs nothing. Longest matching prefix wins, so dated snapshots
(gpt-4o-mini-2024-07-18) take their family's price.
"""

from __future__ import annotations

PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}


def cost_usd(provider: str | None, model: str | None, usage: dict[str, int] | None) -> float | None:
    if provider == "offline":
        return 0.0
    if not model:
        return None
    matches = [name for name in PER_MILLION if model.startswith(name)]
    if not matches:
        return None
    price_in, price_out = PER_MILLION[max(matches, key=len)]
    usage = usage or {}
    return round((usage.get("input_tokens", 0) * price_in + usage.get("output_tokens", 0) * price_out) / 1e6, 8)
