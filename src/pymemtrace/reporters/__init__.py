"""Reporters: pure functions from a snapshot to an output format.

A reporter never calls a probe; it takes plain data and returns text or
bytes.
"""
