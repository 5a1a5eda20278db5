"""Evaluation sets, runs and gates: measured answer quality per assistant and template version.

sets.py (cases, JSONL), drafting.py (cases from the indexed pages), runner.py (a run through the real turn
engine, in batches on the job queue), scoring.py (per-case checks and run metrics, pure functions),
judge.py (answer support: an LLM judge when configured, lexical overlap offline), gates.py (publishing a
gated template version), compare.py (two runs side by side).

May import: every group.
"""
