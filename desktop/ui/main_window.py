"""The main window: the layout of assay, bins, gallery and summary, and the window's own events.
What happens in it belongs to the controllers it owns: `sessions` (the open session and its
classification), `review` (the gallery's review actions), `records` (sign-off, exports, LIS) and
`menu` (menus, toolbar and the shortcut table)."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QEvent, QSettings, Qt
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop.core.inference.wsi import is_slide_name
from desktop.core.resources import user_data_dir, user_models_dir
from desktop.ui.actions import Actions, shortcuts_html
from desktop.ui.bins import BinList
from desktop.ui.dialogs import fit_to_screen, show_text
from desktop.ui.gallery import THUMB_SIZES, BinFilter, GalleryModel, ThumbnailCache
from desktop.ui.gallery_view import FindBox, GalleryView, zoom_step
from desktop.ui.record_controller import RecordController
from desktop.ui.review_actions import ReviewActions
from desktop.ui.session_controller import SessionController
from desktop.ui.settings import WindowSettings
from desktop.ui.summary_panel import SummaryPanel

BANNER_STYLE = "background:#fef3c7; color:#78350f; padding:6px; border:1px solid #f59e0b;"
ALARM_STYLE = "background:#fee2e2; color:#7f1d1d; padding:6px; border:2px solid #dc2626; font-weight:bold;"

log = logging.getLogger(__name__)
LEGEND = ("<span style='color:#1d4ed8'>✎ changed by you</span> · ✓ confirmed · "
          "<span style='color:#b45309'>amber: awaiting review</span> · "
          "<span style='color:#b00020'>red: unfamiliar, unreadable or missing</span>")
HINT = "Open a folder of images (Ctrl+O), or drop one on this window."


def _box(*widgets, stretch: QWidget | None = None) -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addLayout(widget) if isinstance(widget, QHBoxLayout) else layout.addWidget(widget, int(widget is stretch))
    return box


class MainWindow(QMainWindow):
    def __init__(self, data_root: Path | None = None, settings: QSettings | None = None) -> None:
        super().__init__()
        self.data_root = data_root or user_data_dir()
        self.settings = WindowSettings(settings or QSettings("SlideTally", "SlideTally"))
        self.user_models = user_models_dir()  # where site models are installed
        self.undo_stack = QUndoStack(self)
        self.setWindowTitle("SlideTally")
        self.setAcceptDrops(True)
        self.sessions = SessionController(self)
        self.review = ReviewActions(self)
        self.records = RecordController(self)
        self._build()
        self.menu = Actions(self)
        self._build_status()
        self.records.show_operator()
        self._restore_settings()

    # --- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.assay = QComboBox()
        self.assay.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.assay.setMinimumContentsLength(22)
        self.assay.setToolTip("The assay: one per model found")
        self.assay.currentIndexChanged.connect(self.sessions.assay_changed)
        self.thumbnails = ThumbnailCache()
        self.gallery_model = GalleryModel(self.thumbnails)
        self.proxy = BinFilter()
        self.proxy.setSourceModel(self.gallery_model)
        self.gallery = GalleryView()
        self.gallery.setModel(self.proxy)
        self.gallery.customContextMenuRequested.connect(self.review.context_menu)
        self.gallery.doubleClicked.connect(lambda _: self.review.preview())
        self.gallery.zoom_requested.connect(lambda step: self.thumb_slider.setValue(
            THUMB_SIZES.index(zoom_step(THUMB_SIZES[self.thumb_slider.value()], step))))
        self.find = FindBox()
        self.find.leave.connect(self.gallery.setFocus)
        self.find.setPlaceholderText("Find by file name (Ctrl+F)")
        self.find.setClearButtonEnabled(True)
        self.find.textChanged.connect(self.proxy.set_name_filter)
        self.thumb_slider = QSlider(Qt.Orientation.Horizontal)
        self.thumb_slider.setRange(0, len(THUMB_SIZES) - 1)
        self.thumb_slider.setMaximumWidth(140)
        self.thumb_slider.setToolTip("Thumbnail size (Ctrl+wheel on the gallery)")
        self.thumb_slider.valueChanged.connect(self._thumb_size_changed)
        self.names_box = QCheckBox("File names")
        self.names_box.toggled.connect(self._thumb_size_changed)
        tools = QHBoxLayout()
        tools.setContentsMargins(0, 0, 0, 0)
        tools.addWidget(self.find, 1)
        tools.addWidget(QLabel("Size"))
        tools.addWidget(self.thumb_slider)
        tools.addWidget(self.names_box)
        self.bins = BinList(self.review.dropped_on_bin)
        self.bins.currentItemChanged.connect(self.review.bin_changed)
        legend = QLabel(LEGEND)
        legend.setWordWrap(True)
        legend.setStyleSheet("font-size: 8pt;")
        bins_box = _box(self.bins, legend, stretch=self.bins)
        bins_box.setMinimumWidth(130)
        bins_box.setMaximumWidth(280)
        self.summary = SummaryPanel()
        self.summary.setMinimumWidth(240)
        self.summary.target_changed.connect(self._target_changed)
        self.summary.heat.tile_clicked.connect(self.review.tile_clicked)
        self.summary.heat.tile_opened.connect(self.review.tile_opened)
        self.splitter = splitter = QSplitter()
        for widget in (bins_box, _box(tools, self.gallery, stretch=self.gallery), self.summary):
            splitter.addWidget(widget)
        splitter.setChildrenCollapsible(False)
        splitter.setStretchFactor(1, 3)
        splitter.setStretchFactor(2, 1)
        splitter.setSizes([200, 760, 380])
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet(BANNER_STYLE)
        self.banner.setVisible(False)
        self.setCentralWidget(_box(self.banner, splitter, stretch=splitter))

    def _build_status(self) -> None:
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(280)
        self.progress.setVisible(False)
        self.rate = QLabel()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.sessions.cancel)
        self.cancel_button.setVisible(False)
        self.operator_label = QLabel()  # who is working: always shown, changed only by File → Change user
        for widget in (self.rate, self.progress, self.cancel_button, self.operator_label):
            self.statusBar().addPermanentWidget(widget)
        self.statusBar().showMessage(HINT)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow():
            self.sessions.catch_up()  # another process may have written to the open session
        super().changeEvent(event)

    def show_banner(self, text: str, alarm: bool = False) -> None:
        """The banner above the gallery: yellow for a notice, red for a record that must not be trusted."""
        self.banner.setStyleSheet(ALARM_STYLE if alarm else BANNER_STYLE)
        self.banner.setText(text)
        self.banner.setVisible(True)

    def show_progress(self, running: bool) -> None:
        """The progress bar and Cancel while classifying (busy until the first count arrives)."""
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.menu.cancel.setEnabled(running)
        if running:
            self.progress.setRange(0, 0)
        else:
            self.rate.clear()

    def show_rate(self, p) -> None:
        self.progress.setRange(0, p.total)
        self.progress.setValue(p.done)
        eta_text = f", {p.eta_s:.0f} s left" if p.eta_s != float("inf") else ""
        self.rate.setText(f"{p.done}/{p.total} · {p.images_per_s:.0f} images/s{eta_text}")

    # --- settings ----------------------------------------------------------------------------
    def _restore_settings(self) -> None:
        s = self.settings
        if s.geometry is not None:
            self.restoreGeometry(s.geometry)
        else:
            self.resize(1400, 860)
        self._clamp_to_screen()
        if s.splitter is not None:
            self.splitter.restoreState(s.splitter)
        else:  # first start: shares of the window, so a small screen keeps a readable summary
            width = max(self.width(), 600)
            self.splitter.setSizes([int(0.16 * width), int(0.52 * width), int(0.32 * width)])
        self.thumb_slider.setValue(THUMB_SIZES.index(s.thumb_size))
        self.names_box.setChecked(s.file_names)
        self._thumb_size_changed()
        self.rebuild_recent()

    def _clamp_to_screen(self) -> None:
        """A geometry saved on a larger screen (or at another scale) is fitted to this one."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        available = screen.availableGeometry()
        width, height = min(self.width(), available.width()), min(self.height(), available.height() - 30)
        if (width, height) != (self.width(), self.height()):
            self.resize(width, height)
        frame = self.frameGeometry()
        if not available.contains(frame):
            self.move(max(available.left(), min(frame.left(), available.right() - frame.width())),
                      max(available.top(), min(frame.top(), available.bottom() - frame.height())))

    def _save_settings(self) -> None:
        self.settings.geometry = self.saveGeometry()
        self.settings.splitter = self.splitter.saveState()
        if self.bins.current_key() is not None:
            self.settings.bin = self.bins.current_key()

    def _target_changed(self, value: int) -> None:
        self.records.set_target(value)

    def _thumb_size_changed(self, *_) -> None:
        size, names = THUMB_SIZES[self.thumb_slider.value()], self.names_box.isChecked()
        self.thumbnails.set_size(size)
        self.gallery_model.show_names = names
        self.gallery.set_thumb_size(size, names)
        self.gallery_model.layoutChanged.emit()
        self.settings.thumb_size, self.settings.file_names = size, names

    def rebuild_recent(self) -> None:
        self.menu.rebuild_recent(self.settings.recent, self.sessions.open_folder)

    # --- help and messages -------------------------------------------------------------------
    def show_shortcuts(self) -> None:
        show_text(self, "Keyboard shortcuts", shortcuts_html())

    def show_model_card(self) -> None:
        info = self.sessions.info
        if info is None:
            return
        card = info.path.with_suffix("").with_suffix(".card.md")
        dialog = QDialog(self)
        dialog.setWindowTitle(f"Model card — {info.display_name}")
        text = QTextBrowser()
        text.setSearchPaths([str(card.parent)])
        text.setMarkdown(card.read_text(encoding="utf-8") if card.exists() else "No model card was shipped with this model.")
        QVBoxLayout(dialog).addWidget(text)
        fit_to_screen(dialog, 900, 700)
        dialog.exec()

    def show_about(self) -> None:
        from desktop.ui.about import about_html

        QMessageBox.about(self, "About SlideTally", about_html(self.sessions.models))

    def ask(self, title: str, question: str) -> bool:
        """A yes/no question whose safe answer, No, is the default (Enter does not say yes by accident)."""
        answer = QMessageBox.question(self, title, question, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def error(self, title: str, message: str) -> None:
        message = message[:1].upper() + message[1:]  # every sentence the technician reads starts as one
        log.warning("%s: %s", title, message)
        if self.isVisible():
            QMessageBox.warning(self, title, message)
        else:
            self.statusBar().showMessage(f"{title}: {message}")

    # --- window events --------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt API
        urls = event.mimeData().urls()
        if urls and (Path(urls[0].toLocalFile()).is_dir() or is_slide_name(Path(urls[0].toLocalFile()))):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt API
        urls = event.mimeData().urls()
        if urls:
            self.sessions.open_folder(Path(urls[0].toLocalFile()))

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._save_settings()
        self.sessions.shutdown()  # cancels and waits for the classifier: every stored call stays
        self.thumbnails.wait()
        super().closeEvent(event)
