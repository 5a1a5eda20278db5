"""Job and cron bodies: plain `run(payload)` functions called by api/jobs.py and scripts.

Each must be safe to run twice and to be cut off anywhere (a function killed mid-run is run again from
the start by the next QStash retry, see shared/jobs.py), and must never assume it runs alone.
"""
