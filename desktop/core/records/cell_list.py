"""The open session's cells as the window shows them: least confident first, with a per-bin tally, kept up to
date as cells arrive and change. An evented list (napari's EventedList idea): it announces each change before and
after making it, so a Qt list model can adapt it (begin/end rows) while every figure is read from it, not from Qt."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass

from desktop.core.events import Event
from desktop.core.records.domain import Cell
from desktop.core.records.review import cell_bin

SortKey = tuple[float, int]


def sort_key(cell: Cell) -> SortKey:
    """Least confident first (unreadable files have confidence 0), then in arrival order."""
    return (cell.confidence, cell.id)


@dataclass
class SortedCells:
    """Cells sorted, with their keys, index and per-bin tally: made off the GUI thread when a session opens
    (sorting and indexing 20,000 cells took the GUI thread ~50 ms)."""

    cells: list[Cell]
    keys: list[SortKey]
    key_of_id: dict[int, SortKey]
    key_of_relative: dict[str, SortKey]
    tally: Counter

    @classmethod
    def of(cls, cells: list[Cell]) -> SortedCells:
        ordered = sorted(cells, key=sort_key)
        keys = [sort_key(c) for c in ordered]
        return cls(ordered, keys, {c.id: k for c, k in zip(ordered, keys)},
                   {c.file: k for c, k in zip(ordered, keys)}, Counter(cell_bin(c) for c in ordered))


class CellListEvents:
    """`resetting`/`reset`, `inserting(position, count)`/`inserted`, `removing(row)`/`removed`, `changed(row)`."""

    def __init__(self) -> None:
        self.resetting, self.reset = Event("resetting"), Event("reset")
        self.inserting, self.inserted = Event("inserting"), Event("inserted")
        self.removing, self.removed = Event("removing"), Event("removed")
        self.changed = Event("changed")


class CellList:
    """The cells in display order. Kept sorted here rather than by a sorting proxy: a proxy sorts by calling
    `data()` n·log n times, which froze the window for seconds at 20,000 cells."""

    def __init__(self) -> None:
        self.events = CellListEvents()
        self._set(SortedCells.of([]))

    def _set(self, rows: SortedCells) -> None:
        self.cells, self._keys, self._key_of_id, self._key_of_relative, self._tally = (
            rows.cells, rows.keys, rows.key_of_id, rows.key_of_relative, rows.tally)

    def __len__(self) -> int:
        return len(self.cells)

    def replace(self, cells: list[Cell] | SortedCells) -> None:
        """Every cell anew: from cells, or from cells already sorted off the GUI thread."""
        rows = cells if isinstance(cells, SortedCells) else SortedCells.of(cells)
        self.events.resetting.emit()
        self._set(rows)
        self.events.reset.emit()

    def counts(self) -> dict[str, int]:
        """Cells per bin (`cell_bin`), every bin with at least one."""
        return {key: n for key, n in self._tally.items() if n}

    def row_of(self, cell_id: int) -> int | None:
        return self._row_of_key(self._key_of_id.get(cell_id))

    def row_of_file(self, relative: str) -> int | None:
        return self._row_of_key(self._key_of_relative.get(relative))

    def _row_of_key(self, key: SortKey | None) -> int | None:
        if key is None:
            return None
        row = bisect_left(self._keys, key)
        return row if row < len(self._keys) and self._keys[row] == key else None

    def upsert(self, cells: list[Cell]) -> None:
        """Add new cells at their sorted places and replace changed ones, row by row (no reset)."""
        new = []
        for c in cells:
            row = self.row_of(c.id)
            if row is None:
                new.append(c)
            elif sort_key(c) == self._keys[row]:
                self._tally[cell_bin(self.cells[row])] -= 1
                self._tally[cell_bin(c)] += 1
                self.cells[row] = c
                self.events.changed.emit(row)
            else:  # its confidence changed (not expected): move it
                self.events.removing.emit(row)
                self._tally[cell_bin(self.cells[row])] -= 1
                del self.cells[row], self._keys[row]
                self.events.removed.emit()
                new.append(c)
        if new:
            self._insert(sorted(new, key=sort_key))

    def _insert(self, new: list[Cell]) -> None:
        groups: dict[int, list[Cell]] = {}
        for c in new:  # cells that land between the same two existing rows go in as one block
            groups.setdefault(bisect_left(self._keys, sort_key(c)), []).append(c)
        for position in sorted(groups, reverse=True):  # back to front: earlier positions stay valid
            block = groups[position]
            self.events.inserting.emit(position, len(block))
            self.cells[position:position] = block
            self._keys[position:position] = [sort_key(c) for c in block]
            self.events.inserted.emit()
        for c in new:
            self._key_of_id[c.id] = self._key_of_relative[c.file] = sort_key(c)
            self._tally[cell_bin(c)] += 1
