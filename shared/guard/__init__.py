"""Who may ask, and how much: API keys and their scopes, the console's NextAuth sessions, the FastAPI
auth dependencies, allowed origins, rate limits, the daily token budget and the overrides that tune
both, PII redaction, and the audit log of admin actions.

May import: core.
"""
