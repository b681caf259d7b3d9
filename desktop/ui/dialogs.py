"""Small forms the technician fills in: who they are, the specimen, sign-off."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QWidget


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
