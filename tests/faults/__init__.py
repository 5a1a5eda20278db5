"""Fault-injection suite: faults injected into the real local stack, asserting what users would notice."""
