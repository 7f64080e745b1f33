"""Progressive delivery: rollout strategies (direct, canary, A/B), the analysis of a candidate
against the champion from the inference table, and its persisted records."""
