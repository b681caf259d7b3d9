"""The slide map for patch assays: final calls over the slide's mosaic, with a legend, or the
P(IDC) the AI calls were decided on, before review (AI only, one tick away); Ctrl+wheel or +/-
zooms at the pointer, a drag pans, a click on a tile selects its patch in the gallery and a
double-click opens it large."""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from desktop.core.inference.slide import (
    CALL_COLOURS,
    CALL_LEGEND,
    MAP_CELL_PX,
    PROBABILITY_ENDS,
    call_overlay,
    probability_overlay,
)
from desktop.core.report.summary import SlideSummary
from desktop.outlets.qimage import to_qimage


class _MapView(QGraphicsView):
    tile_clicked = Signal(int, int)  # column, row of the patch grid
    tile_opened = Signal(int, int)  # double-click: the same tile, to be shown large

    def __init__(self) -> None:
        super().__init__()
        self._pressed_at = None  # where the button went down: a release far from it ends a pan, not a click
        self.setScene(QGraphicsScene(self))
        self.item = QGraphicsPixmapItem()
        self.scene().addItem(self.item)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        self.setToolTip("Click a tile to select its patch, double-click to see it large; drag to pan; "
                        "Ctrl+wheel or +/− zooms")
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)  # the wheel zooms where you point
        self._fitted = True

    def set_image(self, image) -> None:
        self.item.setPixmap(QPixmap.fromImage(image))
        self.scene().setSceneRect(self.item.boundingRect())
        if self._fitted:
            self.fitInView(self.item, Qt.AspectRatioMode.KeepAspectRatio)

    def zoom(self, factor: float) -> None:
        self._fitted = False
        self.scale(factor, factor)

    def wheelEvent(self, event):  # noqa: N802 - Qt API
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom(1.25 if event.angleDelta().y() > 0 else 0.8)
            return
        super().wheelEvent(event)

    def keyPressEvent(self, event):  # noqa: N802 - Qt API
        if event.key() in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom(1.25)
        elif event.key() == Qt.Key.Key_Minus:
            self.zoom(0.8)
        else:
            super().keyPressEvent(event)

    def resizeEvent(self, event):  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if self._fitted and not self.item.pixmap().isNull():
            self.fitInView(self.item, Qt.AspectRatioMode.KeepAspectRatio)

    def _tile_at(self, event) -> tuple[int, int] | None:
        point = self.mapToScene(event.position().toPoint())
        if not self.item.boundingRect().contains(point):
            return None
        return int(point.x()) // MAP_CELL_PX, int(point.y()) // MAP_CELL_PX

    def mousePressEvent(self, event):  # noqa: N802 - Qt API
        self._pressed_at = event.position().toPoint()
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event):  # noqa: N802 - Qt API
        super().mouseReleaseEvent(event)
        pressed, self._pressed_at = self._pressed_at, None
        moved = pressed is not None and \
            (event.position().toPoint() - pressed).manhattanLength() >= QApplication.startDragDistance()
        tile = self._tile_at(event)
        if tile is not None and not moved:
            self.tile_clicked.emit(*tile)

    def mouseDoubleClickEvent(self, event):  # noqa: N802 - Qt API
        tile = self._tile_at(event)
        if tile is not None:
            self.tile_opened.emit(*tile)
        else:
            super().mouseDoubleClickEvent(event)


def _legend(entries: list[tuple[str, str]]) -> QLabel:
    """Colour squares with their labels in one word-wrapping line: on a narrow panel the entries wrap as wholes
    (never "IDC / no / aw")."""
    items = [f"<span style='color:{colour}'>■</span>&nbsp;{html.escape(label).replace(' ', '&nbsp;')}"
             for colour, label in entries]
    legend = QLabel(" &nbsp; ".join(items))
    legend.setWordWrap(True)
    return legend


class SlideMap(QWidget):
    """The map and its legend: the final calls, or with "AI only" ticked the model's P(IDC) before review."""

    tile_clicked = Signal(int, int)
    tile_opened = Signal(int, int)

    def __init__(self) -> None:
        super().__init__()
        self.view = _MapView()
        self.view.tile_clicked.connect(self.tile_clicked)
        self.view.tile_opened.connect(self.tile_opened)
        self.final_legend = _legend([(QColor(*CALL_COLOURS[value][0]).name(), label) for label, value in CALL_LEGEND])
        low, high = (QColor(*c).name() for c in PROBABILITY_ENDS)
        self.ai_legend = _legend([(low, "P(IDC) 0"), (high, "1 (AI only, before review)")])
        self.ai_only = QCheckBox("AI only")
        self.ai_only.setToolTip("Show the model's own probability of IDC per patch, before the technician's review")
        self.ai_only.toggled.connect(self._render)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.final_legend)
        layout.addWidget(self.ai_legend)
        layout.addWidget(self.ai_only)
        self._slide: SlideSummary | None = None
        self._mosaic: np.ndarray | None = None
        self._render()

    def show_slide(self, slide: SlideSummary, mosaic: np.ndarray | None) -> None:
        self._slide, self._mosaic = slide, mosaic
        ai = "" if slide.ai_fraction is None else f": {100 * slide.ai_fraction:.1f}% IDC"
        self.ai_only.setText(f"AI only{ai}")
        self._render()

    def overlay(self) -> np.ndarray | None:
        """What the map shows: the final calls, or the model's P(IDC) when "AI only" is ticked."""
        if self._slide is None:
            return None
        if self.ai_only.isChecked():
            return probability_overlay(self._slide.heat, self._mosaic, MAP_CELL_PX)
        return call_overlay(self._slide.calls, self._mosaic, MAP_CELL_PX)

    def _render(self) -> None:
        ai_only = self.ai_only.isChecked()
        self.final_legend.setVisible(not ai_only)
        self.ai_legend.setVisible(ai_only)
        image = self.overlay()
        if image is not None:
            self.view.set_image(to_qimage(image))
