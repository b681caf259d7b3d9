"""The slide map for patch assays: final calls over the slide's mosaic, with a legend;
Ctrl+wheel or +/- zooms, a click on a tile selects its patch in the gallery."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPixmap
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from desktop.core.slide import CALL_COLOURS, CALL_LEGEND, call_overlay
from desktop.ui.gallery import to_qimage

CELL_PX = 10  # mosaic pixels per patch


def call_overlay_image(calls: np.ndarray, mosaic: np.ndarray | None):
    return to_qimage(call_overlay(calls, mosaic, CELL_PX))


class _MapView(QGraphicsView):
    tile_clicked = Signal(int, int)  # column, row of the patch grid

    def __init__(self):
        super().__init__()
        self.setScene(QGraphicsScene(self))
        self.item = QGraphicsPixmapItem()
        self.scene().addItem(self.item)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        self.setToolTip("Click a tile to show its patch; Ctrl+wheel or +/− zooms")
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

    def mouseReleaseEvent(self, event):  # noqa: N802 - Qt API
        super().mouseReleaseEvent(event)
        point = self.mapToScene(event.position().toPoint())
        if self.item.boundingRect().contains(point):
            self.tile_clicked.emit(int(point.x()) // CELL_PX, int(point.y()) // CELL_PX)


class SlideMap(QWidget):
    """The map and its legend."""

    tile_clicked = Signal(int, int)

    def __init__(self):
        super().__init__()
        self.view = _MapView()
        self.view.tile_clicked.connect(self.tile_clicked)
        legend = QHBoxLayout()
        for label, value in CALL_LEGEND:
            colour, _ = CALL_COLOURS[value]
            swatch = QLabel()
            swatch.setFixedSize(12, 12)
            swatch.setStyleSheet(f"background: {QColor(*colour).name()}; border: 1px solid #555;")
            legend.addWidget(swatch)
            legend.addWidget(QLabel(label))
        legend.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view, 1)
        layout.addLayout(legend)

    def show_calls(self, calls: np.ndarray, mosaic: np.ndarray | None) -> None:
        self.view.set_image(call_overlay_image(calls, mosaic))
