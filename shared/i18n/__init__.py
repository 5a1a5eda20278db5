"""Text in many languages: which language a page or a message is in (CLD2), the PostgreSQL text search
configuration for it, and the fixed sentences the server writes into answers, per language.

May import: nothing else in shared.
"""
