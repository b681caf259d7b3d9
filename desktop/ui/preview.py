"""The large view: one cell big with every class probability. The technician walks the
current bin with ←/→, reclassifies with the number keys or the class buttons, confirms with
Enter (the view moves on to the next cell) and closes with Esc."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
)

from desktop.core.inference.imaging import UnreadableImage
from desktop.core.inference.model_info import ModelInfo
from desktop.core.names import readable
from desktop.core.records.domain import Cell
from desktop.core.records.review import ranked_classes
from desktop.core.report.summary import decided_p_positive
from desktop.core.thumbnails import load_cell_image
from desktop.outlets.qimage import to_qimage
from desktop.ui.dialogs import fit_to_screen, reading_view
from desktop.ui.gallery import CellRole


def probabilities_html(cell: Cell, info: ModelInfo) -> str:
    if cell.unreadable:
        return f"<p><b>Unreadable</b>: {html.escape(cell.unreadable)}</p>"
    rows = "".join(
        f"<tr><td>{c.hotkey}</td><td>{html.escape(c.label)}</td><td align=right>{p:.1%}</td></tr>"
        for (key, p) in ranked_classes(cell, info.class_keys) for c in info.classes if c.key == key
    )
    final = cell.call
    if cell.confirmed:
        current = (f"<p><b>Final call:</b> {html.escape(info.label_of(final))} — "
                   + ("changed" if cell.changed else "confirmed") + f" by {html.escape(cell.reviewer or '')}</p>")
    elif cell.needs_review:
        current = f"<p style='color:#b45309'><b>Awaiting review</b> — current call {html.escape(info.label_of(final))}</p>"
    else:
        current = f"<p><b>Current call:</b> {html.escape(info.label_of(final))} (accepted from the model, not confirmed)</p>"
    lines = [_ai_call_html(cell, info), current]
    if cell.missing:
        lines.append("<p style='color:#b00020'>This file is no longer in the folder.</p>")
    if cell.file_changed:
        lines.append("<p style='color:#b45309'>The file changed after an earlier call; see the audit trail.</p>")
    if cell.review_reason:
        lines.append(f"<p style='color:#b45309'>Review: {html.escape(cell.review_reason)}</p>")
    if cell.ood_score is not None and info.ood_threshold:
        lines.append(f"<p>Unfamiliarity score: {cell.ood_score:.2f} (threshold {info.ood_threshold:.2f})</p>")
    caption = "<p>The model's probabilities for this patch alone:</p>" if _slide_blended(cell, info) else ""
    return "".join(lines) + caption + f"<table cellpadding=3><tr><th>key</th><th>class</th><th>P</th></tr>{rows}</table>"


def _slide_blended(cell: Cell, info: ModelInfo) -> bool:
    """True when the call was decided on the slide step's blend, not the patch's own probability."""
    if len(info.classes) != 2 or len(cell.probabilities) != 2 or cell.ai_class is None:
        return False
    return abs(decided_p_positive(cell, info.class_keys[1]) - cell.probabilities[1]) > 5e-4


def _ai_call_html(cell: Cell, info: ModelInfo) -> str:
    """The AI call with the probability it was decided on; for a two-class model the threshold, and
    when the slide step moved it, the patch's own probability and whether its neighbours changed the call."""
    label = html.escape(info.label_of(cell.ai_class))
    if len(info.classes) != 2:
        return f"<p><b>AI call:</b> {label} ({cell.confidence:.1%})</p>"
    positive = info.class_keys[1]
    name = html.escape(info.label_of(positive))
    decided = decided_p_positive(cell, positive)
    text = (f"<p><b>AI call:</b> {label} — P({name}) {decided:.1%}; {name} is called at "
            f"{info.decision_threshold:.0%} or more</p>")
    if _slide_blended(cell, info):
        own = cell.probabilities[1]
        flipped = (own >= info.decision_threshold) != (decided >= info.decision_threshold)
        text += (f"<p>Slide step: this patch alone has P({name}) {own:.1%}; blended with its neighbours on the slide, "
                 f"{decided:.1%}" + (" — <b>its neighbours changed the call</b>." if flipped else ".") + "</p>")
    return text


class CellViewer(QDialog):
    def __init__(self, parent, folder: Path, info: ModelInfo, proxy, row: int,
                 reclassify: Callable[[list[str], str], bool], confirm: Callable[[list[str]], bool]) -> None:
        super().__init__(parent)
        self.folder, self.info, self.proxy, self.row = folder, info, proxy, row
        self._reclassify, self._confirm = reclassify, confirm
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(200, 200)
        # the picture follows the label's size, never the other way round (a small screen keeps its buttons)
        self.image.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self._pixmap: QPixmap | None = None
        self.text = reading_view()
        self.text.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # ←/→ walk the cells instead of moving a text cursor
        self.position = QLabel()
        previous = QPushButton("◀ Previous (←)")
        previous.clicked.connect(lambda: self.step(-1))
        following = QPushButton("Next (→) ▶")
        following.clicked.connect(lambda: self.step(1))
        confirm_button = QPushButton("Confirm (Enter)")
        confirm_button.clicked.connect(self.confirm)
        for button in (previous, following, confirm_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the view
        classes = QGridLayout()
        for i, c in enumerate(info.classes):
            button = QPushButton(f"[{c.hotkey}] {c.label}")
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _=False, key=c.key: self.reclassify(key))
            classes.addWidget(button, i // 2, i % 2)
        row_layout = QHBoxLayout()
        row_layout.addWidget(self.image, 3)
        side = QVBoxLayout()
        side.addWidget(self.text, 1)
        side.addLayout(classes)
        row_layout.addLayout(side, 2)
        nav = QHBoxLayout()
        nav.addWidget(previous)
        nav.addWidget(self.position, 1, Qt.AlignmentFlag.AlignCenter)
        nav.addWidget(confirm_button)
        nav.addWidget(following)
        layout = QVBoxLayout(self)
        layout.addLayout(row_layout, 1)
        layout.addLayout(nav)
        fit_to_screen(self, 960, 620)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # the view itself has the keys
        self.setFocus()
        self.show_row(row)

    def cell(self) -> Cell | None:
        if not 0 <= self.row < self.proxy.rowCount():
            return None
        return self.proxy.data(self.proxy.index(self.row, 0), CellRole)

    def show_row(self, row: int) -> None:
        count = self.proxy.rowCount()
        if count == 0:
            self.accept()  # the bin is empty: nothing left to show
            return
        self.row = max(0, min(row, count - 1))
        cell = self.cell()
        self.setWindowTitle(readable(cell.file))
        self.position.setText(f"{self.row + 1} of {count}")
        try:
            self._pixmap = QPixmap.fromImage(to_qimage(load_cell_image(self.folder, cell.file,
                                                                         patch_size=self.info.patch.size)))
            self._show_pixmap()
        except (UnreadableImage, OSError) as exc:
            self._pixmap = None
            self.image.setText(f"Cannot show this image:\n{exc}")
        self.text.setHtml(probabilities_html(cell, self.info))

    def _show_pixmap(self) -> None:
        if self._pixmap is not None:
            side = max(200, min(560, self.image.width(), self.image.height()))
            self.image.setPixmap(self._pixmap.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                                     Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._show_pixmap()

    def step(self, delta: int) -> None:
        self.show_row(self.row + delta)

    def _after_action(self, file: str) -> None:
        """Move on: to the next cell, or stay on this row when the cell left the bin."""
        cell = self.cell()
        self.show_row(self.row + 1 if cell is not None and cell.file == file else self.row)

    def reclassify(self, key: str) -> None:
        cell = self.cell()
        if cell is not None and not cell.unreadable and self._reclassify([cell.file], key):
            self._after_action(cell.file)

    def confirm(self) -> None:
        cell = self.cell()
        if cell is not None and not cell.unreadable and self._confirm([cell.file]):
            self._after_action(cell.file)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        key, text = event.key(), event.text()
        if key == Qt.Key.Key_Left:
            self.step(-1)
        elif key == Qt.Key.Key_Right:
            self.step(1)
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.confirm()
        elif text and any(c.hotkey == text for c in self.info.classes):
            self.reclassify(next(c.key for c in self.info.classes if c.hotkey == text))
        else:
            super().keyPressEvent(event)  # Esc closes
