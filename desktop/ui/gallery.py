"""The gallery: a virtualised list model of cells with lazily made, cached thumbnails."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QMimeData,
    QModelIndex,
    QObject,
    QRunnable,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QThreadPool,
    Signal,
)
from PySide6.QtGui import QColor, QImage, QPixmap

from desktop.core.inference.model_info import ModelInfo
from desktop.core.names import readable
from desktop.core.records.cell_list import CellList, SortedCells
from desktop.core.records.domain import Cell
from desktop.core.records.review import ALL, in_bin
from desktop.core.report.summary import decided_p_positive
from desktop.core.thumbnails import thumbnail
from desktop.outlets.qimage import to_qimage
from desktop.ui.settings import THUMB

MIME_IDS = "application/x-slidetally-cell-ids"
CellRole = Qt.ItemDataRole.UserRole + 1
ConfidenceRole = Qt.ItemDataRole.UserRole + 2


def thumbnail_image(folder: Path, relative: str, patch_size: int, size: int = THUMB) -> QImage:
    return to_qimage(thumbnail(folder, relative, patch_size=patch_size, size=size))


class _ThumbSignals(QObject):
    ready = Signal(str, QImage)


class _ThumbJob(QRunnable):
    def __init__(self, folder: Path, relative: str, signals: _ThumbSignals, patch_size: int, size: int = THUMB) -> None:
        super().__init__()
        self.folder, self.relative, self.signals, self.size = folder, relative, signals, size
        self.patch_size = patch_size

    def run(self) -> None:
        image = thumbnail_image(self.folder, self.relative, self.patch_size, self.size)
        try:
            self.signals.ready.emit(self.relative, image)
        except RuntimeError:  # the window closed meanwhile (its signals object is gone): nobody waits
            pass


class ThumbnailCache(QObject):
    """Thumbnails made in a thread pool on first request; at most `limit` kept (LRU), fewer
    when they are larger, so that zooming in does not grow memory."""

    changed = Signal(str)

    def __init__(self, limit: int = 4000) -> None:
        super().__init__()
        self.folder: Path | None = None
        self.patch_size = 0  # the model's patch side: tiles of tissue images are cut at it
        self.size = THUMB
        self.base_limit = limit
        self.limit = limit
        self._pixmaps: OrderedDict[str, QPixmap] = OrderedDict()
        self._asked: set[str] = set()
        self._pool = QThreadPool()
        self._pool.setMaxThreadCount(2)
        self._signals = _ThumbSignals()
        self._signals.ready.connect(self._store)
        self.placeholder = QPixmap(THUMB, THUMB)
        self.placeholder.fill(QColor("#e8e8e8"))

    def reset(self, folder: Path, patch_size: int) -> None:
        self._pool.clear()
        self.folder = folder
        self.patch_size = patch_size
        self._pixmaps.clear()
        self._asked.clear()

    def set_size(self, size: int) -> None:
        """Thumbnails are remade at the new size as they are shown."""
        if size == self.size:
            return
        self.size = size
        self.limit = max(500, int(self.base_limit * (THUMB / size) ** 2))
        self._pool.clear()
        self._pixmaps.clear()
        self._asked.clear()
        self.placeholder = QPixmap(size, size)
        self.placeholder.fill(QColor("#e8e8e8"))

    def get(self, relative: str) -> QPixmap:
        pixmap = self._pixmaps.get(relative)
        if pixmap is not None:
            self._pixmaps.move_to_end(relative)
            return pixmap
        if relative not in self._asked and self.folder is not None:
            self._asked.add(relative)
            self._pool.start(_ThumbJob(self.folder, relative, self._signals, self.patch_size, self.size))
        return self.placeholder

    def _store(self, relative: str, image: QImage) -> None:
        if max(image.width(), image.height()) != self.size:
            return  # made at a size the technician has since zoomed away from
        self._pixmaps[relative] = QPixmap.fromImage(image)
        self._asked.discard(relative)
        while len(self._pixmaps) > self.limit:
            self._pixmaps.popitem(last=False)
        self.changed.emit(relative)

    def start(self, job: QRunnable) -> None:
        """Run other picture work (the slide mosaic) on the thumbnails' threads."""
        self._pool.start(job)

    def wait(self, ms: int = -1) -> bool:
        """Wait for every thumbnail job (at most `ms` milliseconds); True when all are done."""
        return self._pool.waitForDone(ms)


def percent_on_its_side(p: float, threshold: float, positive_call: bool) -> str:
    """P as a percentage with just enough decimals to stay on the side of the threshold the
    call was made on: "No IDC 63.99%" at a 64% threshold, never "No IDC 64%"."""
    for digits in (0, 1, 2):
        shown = round(p * 100, digits)
        if (shown >= threshold * 100) == positive_call:
            return f"{shown:.{digits}f}%"
    return f"{p * 100:.3f}%"


class GalleryModel(QAbstractListModel):
    """The Qt face of a CellList (all cells of the session, one row each, least confident first): it follows the
    list's events with Qt's row notifications; the proxy picks a bin."""

    def __init__(self, thumbnails: ThumbnailCache, cells: CellList | None = None) -> None:
        super().__init__()
        self.show_names = False
        self.info: ModelInfo | None = None
        self.list = cells if cells is not None else CellList()
        events = self.list.events
        events.resetting.connect(self.beginResetModel)
        events.reset.connect(self.endResetModel)
        events.inserting.connect(lambda position, n: self.beginInsertRows(QModelIndex(), position, position + n - 1))
        events.inserted.connect(self.endInsertRows)
        events.removing.connect(lambda row: self.beginRemoveRows(QModelIndex(), row, row))
        events.removed.connect(self.endRemoveRows)
        events.changed.connect(lambda row: self.dataChanged.emit(self.index(row), self.index(row)))
        self.thumbnails = thumbnails
        thumbnails.changed.connect(self._thumbnail_ready)

    @property
    def cells(self) -> list[Cell]:
        return self.list.cells

    def set_info(self, info: ModelInfo | None) -> None:
        """The model whose labels the rows show."""
        self.info = info
        if self.list.cells:
            self.dataChanged.emit(self.index(0), self.index(len(self.list) - 1))

    def reset(self, cells: list[Cell] | SortedCells, info: ModelInfo | None) -> None:
        """All rows anew (a test's or a standalone gallery's; the window's come through its AppState)."""
        self.info = info
        self.list.replace(cells)

    def row_of(self, cell_id: int) -> int | None:
        return self.list.row_of(cell_id)

    def upsert(self, cells: list[Cell]) -> None:
        self.list.upsert(cells)

    def label(self, cell: Cell) -> str:
        """Two lines under a thumbnail: the current call with its mark, then what the model said.
        A changed cell shows the AI's call and confidence, not a confidence that is not its own."""
        if cell.missing:
            return "missing\nfrom folder"
        if cell.unreadable:
            return "unreadable"
        final = cell.call
        short = self.info.short_label_of(final) if self.info and final else (final or "")
        if cell.changed:
            ai = self.info.short_label_of(cell.ai_class) if self.info else cell.ai_class
            return f"✎ {short}\nAI: {ai} {cell.confidence:.0%}"
        mark = "✓ " if cell.confirmed else ""
        if self.info and len(self.info.classes) == 2 and len(cell.probabilities) == 2:
            # A two-class call is made at the model's threshold, so "No IDC 45%" would
            # read oddly: show the probability of the positive class instead (the one the
            # call was decided on, after any slide-level step).
            positive_key = self.info.class_keys[1]
            p = decided_p_positive(cell, positive_key)
            shown = percent_on_its_side(p, self.info.decision_threshold, cell.ai_class == positive_key)
            return f"{mark}{short}\nP({self.info.short_label_of(positive_key)}) {shown}"
        return f"{mark}{short}\n{cell.confidence:.0%}"

    def rowCount(self, parent=None) -> int:  # noqa: N802 - Qt API
        return 0 if parent is not None and parent.isValid() else len(self.cells)

    def _label(self, key: str | None) -> str:
        return self.info.label_of(key) if (self.info and key) else (key or "")

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        cell = self.cells[index.row()]
        shown = self._SHOWN_AS.get(role)
        return None if shown is None else shown(self, cell)

    def _display(self, cell: Cell) -> str:
        text = self.label(cell)
        return f"{text}\n{cell.file}" if self.show_names else text

    def _decoration(self, cell: Cell) -> QPixmap:
        return self.thumbnails.get(cell.file)

    def _tooltip(self, cell: Cell) -> str:
        lines = [readable(cell.file)]
        if cell.unreadable:
            lines.append(f"Unreadable: {cell.unreadable}")
        else:
            lines.append(f"AI call: {self._label(cell.ai_class)} ({cell.confidence:.1%})")
            if cell.final_class and cell.changed:
                lines.append(f"Final call: {self._label(cell.final_class)} (changed by {cell.reviewer})")
            if cell.review_reason:
                lines.append(f"Review: {cell.review_reason}")
        return "\n".join(lines)

    def _foreground(self, cell: Cell) -> QColor | None:
        if cell.unreadable or cell.unfamiliar or cell.missing:
            return QColor("#b00020")
        if cell.changed:
            return QColor("#1d4ed8")
        if cell.needs_review:
            return QColor("#b45309")
        return None

    def _cell(self, cell: Cell) -> Cell:
        return cell

    def _confidence(self, cell: Cell) -> float:
        return cell.confidence

    # data() is asked per visible cell per role per paint: one dict lookup picks what a role shows.
    _SHOWN_AS = {int(Qt.ItemDataRole.DisplayRole): _display, int(Qt.ItemDataRole.DecorationRole): _decoration,
                 int(Qt.ItemDataRole.ToolTipRole): _tooltip, int(Qt.ItemDataRole.ForegroundRole): _foreground,
                 int(CellRole): _cell, int(ConfidenceRole): _confidence}

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    def mimeTypes(self) -> list[str]:  # noqa: N802 - Qt API
        return [MIME_IDS]

    def mimeData(self, indexes: list[QModelIndex]) -> QMimeData:  # noqa: N802 - Qt API
        mime = QMimeData()
        ids = sorted({self.cells[i.row()].id for i in indexes if i.isValid()})
        mime.setData(MIME_IDS, json.dumps(ids).encode())
        return mime

    def _thumbnail_ready(self, relative: str) -> None:
        row = self.list.row_of_file(relative)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


class BinFilter(QSortFilterProxyModel):
    """Shows one bin (a class, Review, Unreadable or all) in the source's order (least
    confident first); it filters only, and re-filters a cell when its call changes."""

    def __init__(self) -> None:
        super().__init__()
        self.bin_key = ALL
        self.name_filter = ""
        self.setDynamicSortFilter(True)

    def set_bin(self, bin_key: str) -> None:
        self.bin_key = bin_key
        self.invalidate()

    def set_name_filter(self, text: str) -> None:
        self.name_filter = text.strip().casefold()
        self.invalidate()

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:  # noqa: N802 - Qt API
        cell = self.sourceModel().cells[row]
        return in_bin(cell, self.bin_key) and (not self.name_filter or self.name_filter in cell.file.casefold())

    @staticmethod
    def thumb_size() -> QSize:
        return QSize(THUMB, THUMB)
