"""The window's panes, as the controllers are given them (layout.build_panes makes them)."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QSlider, QSplitter

from desktop.ui.bins import BinList
from desktop.ui.gallery import BinFilter, GalleryModel, ThumbnailCache
from desktop.ui.gallery_view import FindBox, GalleryView
from desktop.ui.summary_panel import SummaryPanel


@dataclass
class Panes:
    """The window's widgets the controllers are given (each takes the ones it shows or listens to)."""

    assay: QComboBox
    thumbnails: ThumbnailCache
    gallery_model: GalleryModel
    proxy: BinFilter
    gallery: GalleryView
    find: FindBox
    thumb_slider: QSlider
    names_box: QCheckBox
    bins: BinList
    summary: SummaryPanel
    splitter: QSplitter
    banner: QLabel
