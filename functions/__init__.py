"""Job and cron bodies: plain `run(payload)` functions, safe to run twice, called by api/jobs.py and scripts."""
