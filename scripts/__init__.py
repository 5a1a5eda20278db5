"""Operator commands (`python -m scripts ...`), the local dev stack and the local service stand-ins."""
