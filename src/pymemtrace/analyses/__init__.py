"""Analyses: turn snapshots into answers (growth, diffs, rankings, verdicts).

An analysis reads snapshots and returns data; it never renders.
"""
