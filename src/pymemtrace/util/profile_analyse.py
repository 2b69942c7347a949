"""Moved to :mod:`pymemtrace.analyses.profile`; this name keeps working."""
from pymemtrace.analyses.profile import (
    DEFAULT_TOP,
    MAX_KEPT_MESSAGES,
    OPENED_BY,
    OPENING,
    TIMELINE_POINTS,
    Growth,
    ProfileAccumulator,
    ProfileAnalysis,
    RetainedStack,
    SiteBytes,
    SiteTotal,
    analyse,
    analyse_file,
    analyse_lines,
)

__all__ = [
    "DEFAULT_TOP", "MAX_KEPT_MESSAGES", "OPENED_BY", "OPENING", "TIMELINE_POINTS", "Growth",
    "ProfileAccumulator", "ProfileAnalysis", "RetainedStack", "SiteBytes", "SiteTotal", "analyse",
    "analyse_file", "analyse_lines",
]
