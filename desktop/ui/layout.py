"""The main window's panes and status bar, built when the window is completed (MainWindow.complete): this module
brings in the gallery, bins and summary, and through them the core, so the window's frame is painted first."""

from __future__ import annotations

from dataclasses import fields

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop.ui.app_state import AppState
from desktop.ui.bins import BinList
from desktop.ui.feedback import BANNER_STYLE, Feedback
from desktop.ui.gallery import BinFilter, GalleryModel, ThumbnailCache
from desktop.ui.gallery_view import FindBox, GalleryView, zoom_step
from desktop.ui.panes import Panes
from desktop.ui.settings import THUMB_SIZES
from desktop.ui.summary_panel import SummaryPanel

HINT = "Open a folder of images (Ctrl+O), or drop one on this window."

LEGEND = ("<span style='color:#1d4ed8'>✎ changed by you</span> · ✓ confirmed · "
          "<span style='color:#b45309'>amber: awaiting review</span> · "
          "<span style='color:#b00020'>red: unfamiliar, unreadable or missing</span>")

def _box(*widgets, stretch: QWidget | None = None) -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addLayout(widget) if isinstance(widget, QHBoxLayout) else layout.addWidget(widget, int(widget is stretch))
    return box


def build_panes(w: QMainWindow, state: AppState) -> Panes:
    """The assay box, the bins with the legend, the gallery (showing the state's cells) with its tools, the
    summary, and the banner; set on the window under the same names. The controllers connect their own slots."""
    w.assay = QComboBox()
    w.assay.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    w.assay.setMinimumContentsLength(22)
    w.assay.setToolTip("The assay: one per model found")
    w.thumbnails = ThumbnailCache()
    w.gallery_model = GalleryModel(w.thumbnails, state.cells)
    w.proxy = BinFilter()
    w.proxy.setSourceModel(w.gallery_model)
    w.gallery = GalleryView()
    w.gallery.setModel(w.proxy)
    w.gallery.zoom_requested.connect(lambda step: w.thumb_slider.setValue(
        THUMB_SIZES.index(zoom_step(THUMB_SIZES[w.thumb_slider.value()], step))))
    w.find = FindBox()
    w.find.leave.connect(w.gallery.setFocus)
    w.find.setPlaceholderText("Find by file name (Ctrl+F)")
    w.find.setClearButtonEnabled(True)
    w.find.textChanged.connect(w.proxy.set_name_filter)
    w.thumb_slider = QSlider(Qt.Orientation.Horizontal)
    w.thumb_slider.setRange(0, len(THUMB_SIZES) - 1)
    w.thumb_slider.setMaximumWidth(140)
    w.thumb_slider.setToolTip("Thumbnail size (Ctrl+wheel on the gallery)")
    w.names_box = QCheckBox("File names")
    tools = QHBoxLayout()
    tools.setContentsMargins(0, 0, 0, 0)
    tools.addWidget(w.find, 1)
    tools.addWidget(QLabel("Size"))
    tools.addWidget(w.thumb_slider)
    tools.addWidget(w.names_box)
    w.bins = BinList()
    legend = QLabel(LEGEND)
    legend.setWordWrap(True)
    legend.setStyleSheet("font-size: 8pt;")
    bins_box = _box(w.bins, legend, stretch=w.bins)
    bins_box.setMinimumWidth(130)
    bins_box.setMaximumWidth(280)
    w.summary = SummaryPanel()
    w.summary.setMinimumWidth(240)
    w.splitter = splitter = QSplitter()
    for widget in (bins_box, _box(tools, w.gallery, stretch=w.gallery), w.summary):
        splitter.addWidget(widget)
    splitter.setChildrenCollapsible(False)
    splitter.setStretchFactor(1, 3)
    splitter.setStretchFactor(2, 1)
    splitter.setSizes([200, 760, 380])
    w.banner = QLabel()
    w.banner.setWordWrap(True)
    w.banner.setStyleSheet(BANNER_STYLE)
    w.banner.setVisible(False)
    w.setCentralWidget(_box(w.banner, splitter, stretch=splitter))
    return Panes(**{field.name: getattr(w, field.name) for field in fields(Panes)})


def build_status(w: QMainWindow) -> Feedback:
    """The status bar's permanent parts (rate, progress, Cancel and who is working), and the Feedback that shows
    messages in it, in the banner and in message boxes."""
    w.progress = QProgressBar()
    w.progress.setMaximumWidth(280)
    w.progress.setVisible(False)
    w.rate = QLabel()
    w.cancel_button = QPushButton("Cancel")
    w.cancel_button.setVisible(False)
    w.operator_label = QLabel()  # who is working: always shown, changed only by File → Change user
    for widget in (w.rate, w.progress, w.cancel_button, w.operator_label):
        w.statusBar().addPermanentWidget(widget)
    w.statusBar().showMessage(HINT)
    return Feedback(w, w.statusBar(), w.banner, w.progress, w.rate, w.cancel_button)
