"""CPU time of this process (benchmarks; graph.run --workers reports its workers' and owner's)."""

from __future__ import annotations

import resource


def cpu_seconds() -> float:
    """User and system CPU seconds this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
