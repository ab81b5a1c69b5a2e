"""Evaluation: eval sets (BEIR/JSONL import), retrieval metrics, paired comparisons."""
