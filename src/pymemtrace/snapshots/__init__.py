"""Snapshots: plain data a probe hands out, with load and save.

Nothing here measures (that is the probes' job) or renders (the reporters').
"""
