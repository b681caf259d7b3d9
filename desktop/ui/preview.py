"""A large view of one cell with every class probability."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QTextBrowser, QVBoxLayout

from desktop.core.imaging import UnreadableImage
from desktop.core.model import ModelInfo
from desktop.core.names import readable
from desktop.core.review import ranked_classes
from desktop.core.store import Cell
from desktop.ui.gallery import load_cell_image, to_qimage


def probabilities_html(cell: Cell, info: ModelInfo) -> str:
    if cell.unreadable:
        return f"<p><b>Unreadable</b>: {html.escape(cell.unreadable)}</p>"
    rows = "".join(
        f"<tr><td>{c.hotkey}</td><td>{html.escape(c.label)}</td><td align=right>{p:.1%}</td></tr>"
        for (key, p) in ranked_classes(cell, info.class_keys) for c in info.classes if c.key == key
    )
    final = cell.final_class or cell.ai_class
    lines = [f"<p><b>AI call:</b> {html.escape(info.label_of(cell.ai_class))} ({cell.confidence:.1%})</p>",
             f"<p><b>Final call:</b> {html.escape(info.label_of(final))}"
             + (f" — changed by {html.escape(cell.reviewer or '')}" if cell.changed else "") + "</p>"]
    if cell.review_reason:
        lines.append(f"<p style='color:#b45309'>Review: {html.escape(cell.review_reason)}</p>")
    if cell.ood_score is not None:
        lines.append(f"<p>Unfamiliarity score: {cell.ood_score:.2f}"
                     f" (threshold {info.ood_threshold:.2f})</p>" if info.ood_threshold else "")
    return "".join(lines) + f"<table cellpadding=3><tr><th>key</th><th>class</th><th>P</th></tr>{rows}</table>"


class PreviewDialog(QDialog):
    def __init__(self, folder: Path, cell: Cell, info: ModelInfo, parent=None):
        super().__init__(parent)
        self.setWindowTitle(readable(cell.file))
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        image = QLabel()
        image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        try:
            pixmap = QPixmap.fromImage(to_qimage(load_cell_image(folder, cell.file)))
            image.setPixmap(pixmap.scaled(480, 480, Qt.AspectRatioMode.KeepAspectRatio,
                                          Qt.TransformationMode.SmoothTransformation))
        except (UnreadableImage, OSError) as exc:
            image.setText(f"Cannot show this image:\n{exc}")
        row.addWidget(image, 2)
        text = QTextBrowser()
        text.setHtml(probabilities_html(cell, info))
        row.addWidget(text, 1)
        layout.addLayout(row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(860, 540)
