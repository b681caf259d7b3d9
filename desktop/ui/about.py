"""The About box's text: versions, models, data, the log file and where the lab policy came from."""

from __future__ import annotations

import html

from desktop import __version__
from desktop.core.inference.model_info import ModelInfo
from desktop.core.logs import log_file
from desktop.core.policy import lab_policy
from desktop.core.resources import resource


def about_html(models: list[ModelInfo]) -> str:
    import cv2
    import onnxruntime
    import PySide6

    listed = "".join(f"<li>{m.display_name} {m.key} v{m.version}</li>" for m in models)
    licences = resource("LICENSES.md")
    return (f"<h3>SlideTally {__version__}</h3><p>CNN pre-classification for laboratory review.</p>"
            f"<p>Models:</p><ul>{listed}</ul>"
            f"<p>PySide6 {PySide6.__version__} (LGPLv3) · ONNX Runtime {onnxruntime.__version__} (MIT) · "
            f"OpenCV {cv2.__version__} (Apache 2.0)</p>"
            "<p>Training data: PBC dataset (Acevedo et al. 2020, CC BY 4.0); Breast Histopathology Images "
            "(Janowczyk &amp; Madabhushi 2016; Cruz-Roa et al. 2014).</p>"
            f"<p>Log file: {log_file()}</p><p>Lab policy: {html.escape(lab_policy().source)}</p>"
            + (f"<p>Licences: {licences}</p>" if licences.exists() else ""))


def show_about(window) -> None:
    from PySide6.QtWidgets import QMessageBox

    QMessageBox.about(window, "About SlideTally", about_html(window.state.models))


def show_model_card(window) -> None:
    """The open model's card (Markdown beside the ONNX file), as shipped or written by adaptation."""
    from PySide6.QtWidgets import QDialog, QVBoxLayout

    from desktop.ui.dialogs import fit_to_screen, reading_view

    info = window.state.info
    if info is None:
        return
    card = info.path.with_suffix("").with_suffix(".card.md")
    dialog = QDialog(window)
    dialog.setWindowTitle(f"Model card — {info.display_name}")
    text = reading_view()
    text.setSearchPaths([str(card.parent)])
    text.setMarkdown(card.read_text(encoding="utf-8") if card.exists() else "No model card was shipped with this model.")
    QVBoxLayout(dialog).addWidget(text)
    fit_to_screen(dialog, 900, 700)
    dialog.exec()
