"""Plumbing every part uses: settings, errors, the database (pool, named queries, slow-query timing), the
key-value cache (Redis), the queue (QStash) and the job runner, the HTTP app factory and middleware,
metrics, logs and error reporting, list cursors and request bodies.

May import: nothing else in shared (the provider table's secret names are the one known exception, see
tests/unit/test_layout.py).
"""
