"""The precision of a counted percentage: a 95% interval from the number of cells counted (Wilson's score
interval, as CLSI H20-A2 and Rümke's table give for a manual differential). 100 cells know a 50% class to
about ±10 points; 200 to about ±7: the reason the target count matters."""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (NaN, NaN when n is 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def precision_note(counted: int) -> str:
    """The sentence under a differential: what its intervals mean for this count."""
    low, high = wilson(counted // 2, counted) if counted else (float("nan"), float("nan"))
    spread = "" if not counted else (f" (here {counted} white cells: a 50% class is known to about "
                                     f"±{50 * (high - low):.0f} points)")
    return ("Each percentage carries its 95% interval from the number of white cells counted (Wilson; CLSI H20-A2)"
            f"{spread}. More cells narrow it: 100 cells give about ±10 points on a 50% class, 200 about ±7.")
