"""Reporters: pure functions from analysed data to text, JSON or SVG.

A reporter never calls a probe; each module renders one format.
"""
