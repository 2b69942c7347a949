"""Reporters: pure functions from analysed data to text, JSON, SVG or gnuplot.

A reporter never calls a probe; each module renders one format (see
docs/design.md).
"""
