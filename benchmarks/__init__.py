"""Overhead benchmarks: every tool as a ratio to the same workload without it."""
