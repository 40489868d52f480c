"""Fleets: one rollout of the same plans over many databases (targets.py: which; rollout.py:
how, with a bounded pool, canaries, a failure budget and deadlines; report.py: what each
target's ledger says)."""
