"""Capacity analysis: what each storage variant of an index costs and keeps, measured on an eval set.

``analyze`` (analysis.py) builds every variant from the stored vectors apart
from what is served, scores the eval set through each and projects memory,
disk and cost; ``project.py`` holds the pure arithmetic, ``report.py`` the
HTML page.
"""
