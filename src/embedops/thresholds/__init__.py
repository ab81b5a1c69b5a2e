"""Similarity thresholds that survive a model change.

- :mod:`~embedops.thresholds.registry`: named thresholds, a value per space, full history, ledger rows;
- :mod:`~embedops.thresholds.calibrate`: the pure maths (quantile matching, precision/F1 matching with a
  bootstrap interval, the behaviour-change report);
- :mod:`~embedops.thresholds.recalibrate`: sampling and scoring pairs in two spaces, proposals, ``--apply``;
- :mod:`~embedops.thresholds.labels`: reading labelled pairs (TSV, CSV, JSONL).

Applications read ``ws.thresholds.get("dedup")``: the value for the space the alias serves now.
"""
