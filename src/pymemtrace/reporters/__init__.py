"""Reporters: pure functions from analysed data to text, SVG, gnuplot files.

A reporter never calls a probe (see docs/design.md).
"""
