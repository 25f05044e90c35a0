"""A share with its 95 % Wilson score interval, as the benchmarks print it."""

from __future__ import annotations

import math


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a share (hits of n)."""
    if not n:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def share(hits: int, n: int) -> str:
    """`hits/n p% [low%, high%]`."""
    low, high = wilson(hits, n)
    return f"{hits}/{n} {hits / max(n, 1):.0%} [{low:.0%}, {high:.0%}]"
