"""Running the engine: migrations (migrations/, applied by `db migrate`), encrypted backups, and the
health report.

May import: every group.
"""
