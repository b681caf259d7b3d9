"""Tools → Verification and Tools → Adapt to this lab, in the real window (offscreen)."""

from __future__ import annotations

from conftest import make_tiny_model
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox
from test_adaptation import site_folder


def test_verification_and_adapt_dialogs(qtbot, tmp_path, monkeypatch):
    from desktop.core.inference.model import Model
    from desktop.core.records.session import Session
    from desktop.ui.lab_tools import AdaptDialog, VerificationDialog
    from desktop.ui.main_window import MainWindow

    models = tmp_path / "models"
    models.mkdir()
    base = Model(make_tiny_model(models / "base.onnx", metadata_overrides={"review_threshold": "0.5"}))
    data = tmp_path / "data"
    folder = site_folder(tmp_path / "slide", {"a": 15, "b": 15, "c": 15})
    s = Session.open(folder, base, data)
    s.classify()
    for c in s.cells():
        s.reclassify([c.file], c.file.split("/")[0], "Ana")
    s.set_identity("S-1", "", "Ana")
    s.sign_off("Ana")
    s.close()

    window = MainWindow(data_root=data, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    window.user_models = tmp_path / "user-models"
    qtbot.addWidget(window)
    window.load_models((models,))

    verification = VerificationDialog(window, base, data)
    assert "Verification report" in verification.text.toHtml() and "45 cells" in verification.text.toPlainText()
    verification.write_pdf(tmp_path / "v.pdf")
    assert (tmp_path / "v.pdf").read_bytes().startswith(b"%PDF")

    installed = []
    dialog = AdaptDialog(window, base, data, window.user_models, lambda p: (installed.append(p), window._site_installed(p)))
    qtbot.addWidget(dialog)
    dialog.fit()
    qtbot.waitUntil(lambda: dialog.install_button.isEnabled(), timeout=60_000)
    text = dialog.text.toPlainText()
    assert "Cross-validated" in text and "Base model" in text and "Adapted" in text
    dialog.site.setText("North lab")
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    dialog.install()  # no approver: refused, nothing written
    assert not installed and "approved by a named person" in warnings[-1]
    assert not list(window.user_models.glob("*.onnx"))
    dialog.approver.setText("Dr. Lee")
    dialog.install()
    assert installed and installed[0].exists()
    assert "base-site-north-lab-1" in [m.key for m in window.models] and "base" in [m.key for m in window.models]
    assert window.info.key == "base"  # the open assay does not change behind the technician's back
