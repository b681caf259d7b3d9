"""Small forms the technician fills in: who they are, the specimen, sign-off."""

from __future__ import annotations

from PySide6.QtCore import QPoint
from PySide6.QtGui import QTextOption
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)


def fit_to_screen(window: QWidget, width: int, height: int) -> None:
    """Size a window to `width` x `height` or to the screen it opens on, whichever is smaller, and
    place it inside that screen: on a 1366x768 laptop at 150 % the screen is 911x512 (Qt pixels)."""
    parent = window.parentWidget()
    screen = (parent.screen() if parent is not None else None) or window.screen() or QApplication.primaryScreen()
    if screen is None:
        window.resize(width, height)
        return
    area = screen.availableGeometry()
    w, h = min(width, area.width() - 16), min(height, area.height() - 40)  # room for a title bar
    window.resize(w, h)
    centre = parent.frameGeometry().center() if parent is not None else area.center()
    x = max(area.left(), min(centre.x() - w // 2, area.right() - w))
    y = max(area.top(), min(centre.y() - h // 2, area.bottom() - h))
    window.move(QPoint(x, y))


def reading_view() -> QTextBrowser:
    """The read-only rich-text view every window uses: lines break between words only, so a narrow column
    shows "Lymphocyte" on one line, never "Lymphocyt" / "e" (QTextBrowser's default breaks anywhere)."""
    view = QTextBrowser()
    view.setWordWrapMode(QTextOption.WrapMode.WordWrap)
    view.setOpenExternalLinks(False)
    return view


def show_text(parent: QWidget, title: str, html: str, width: int = 640, height: int = 560) -> None:
    """A read-only text (the shortcut list, say) that scrolls instead of running off a small screen."""
    dialog = QDialog(parent)
    dialog.setWindowTitle(title)
    text = reading_view()
    text.setHtml(html)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
    buttons.accepted.connect(dialog.accept)
    layout = QVBoxLayout(dialog)
    layout.addWidget(text)
    layout.addWidget(buttons)
    fit_to_screen(dialog, width, height)
    dialog.exec()


class IdentityForm(QDialog):
    """Specimen / accession ID, optional patient ID and, for sign-off, the operator's name."""

    def __init__(self, parent: QWidget | None, title: str, specimen: str, patient: str, operator: str | None,
                 note: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        form = QFormLayout(self)
        if note:
            label = QLabel(note)
            label.setWordWrap(True)
            form.addRow(label)
        self.specimen = QLineEdit(specimen)
        self.specimen.setPlaceholderText("accession number on the request")
        self.patient = QLineEdit(patient)
        self.patient.setPlaceholderText("optional")
        form.addRow("Specimen ID:", self.specimen)
        form.addRow("Patient ID:", self.patient)
        self.operator = None
        if operator is not None:
            self.operator = QLineEdit(operator)
            self.operator.setPlaceholderText("your name, as it goes on the report")
            form.addRow("Signed off by:", self.operator)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.specimen.selectAll()

    @classmethod
    def ask(cls, parent, title: str, specimen: str, patient: str, operator: str | None = None,
            note: str = "") -> tuple[str, str, str] | None:
        """(specimen, patient, operator) or None when cancelled."""
        form = cls(parent, title, specimen, patient, operator, note)
        if form.exec() != QDialog.DialogCode.Accepted:
            return None
        return form.specimen.text().strip(), form.patient.text().strip(), (form.operator.text().strip()
                                                                            if form.operator else "")
