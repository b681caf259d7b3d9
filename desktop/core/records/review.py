"""Which bin of the gallery a cell is in, and how far the review has come."""

from __future__ import annotations

from desktop.core.records.domain import Cell

ALL = "__all__"
REVIEW = "__review__"
UNREADABLE = "__unreadable__"
MISSING = "__missing__"


def cell_bin(cell: Cell) -> str:
    """A class key, or REVIEW (not yet confirmed), UNREADABLE or MISSING (no longer in the folder)."""
    if cell.missing:
        return MISSING
    if cell.unreadable:
        return UNREADABLE
    if cell.needs_review:
        return REVIEW
    return cell.call or UNREADABLE


def in_bin(cell: Cell, bin_key: str) -> bool:
    return bin_key == ALL or cell_bin(cell) == bin_key


def ranked_classes(cell: Cell, keys: list[str]) -> list[tuple[str, float]]:
    """Class keys ordered by the model's probabilities for this cell (for the right-click menu)."""
    if not cell.probabilities:
        return [(k, 0.0) for k in keys]
    return sorted(zip(keys, cell.probabilities), key=lambda kv: -kv[1])
