"""Tools → Verification and Tools → Adapt to this lab, in the real window (offscreen)."""

from __future__ import annotations

from conftest import make_tiny_model, signed_verified_session
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox
from test_adaptation import site_folder


def test_verification_and_adapt_dialogs(qtbot, tmp_path, monkeypatch):
    from desktop.core.inference.model import Model
    from desktop.core.records.session import Session
    from desktop.ui.adapt_dialog import AdaptDialog
    from desktop.ui.lab_tools import VerificationDialog
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
    s.os_user = "ana"  # the technician's login; the lab director approves under another
    s.sign_off("Ana")
    s.close()

    window = MainWindow(data_root=data, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                        user_models=tmp_path / "user-models")
    qtbot.addWidget(window)
    window.sessions.load_models((models,))

    verification = VerificationDialog(window, base, data)
    assert "Verification report" in verification.text.toHtml() and "45 cells" in verification.text.toPlainText()
    verification.write_pdf(tmp_path / "v.pdf")
    assert (tmp_path / "v.pdf").read_bytes().startswith(b"%PDF")

    installed = []
    dialog = AdaptDialog(window, base, data, window.user_models,
                         lambda p: (installed.append(p), window.lab.site_installed(p)))
    qtbot.addWidget(dialog)
    dialog.quick.setChecked(True)  # the tiny model has no network to fine-tune
    dialog.site.setText("North lab")
    dialog.fit()
    qtbot.waitUntil(lambda: dialog.install_button.isEnabled(), timeout=60_000)
    text = dialog.text.toPlainText()
    assert "Site cross-validated" in text and "Base model" in text and "Site model" in text
    assert "test accuracy" not in text.lower()
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    dialog.install()  # no approver: refused, nothing written
    assert not installed and "approved by a named person" in warnings[-1]
    assert not list(window.user_models.glob("*.onnx"))
    dialog.approver.setText("ana")
    dialog.install()  # signed the cells: may not approve the model fitted on them
    assert not installed and "another person" in warnings[-1]
    dialog.approver.setText("Dr. Lee")
    dialog.install()
    assert installed and installed[0].exists()
    keys = [m.key for m in window.sessions.models]
    assert "base-site-north-lab-1" in keys and "base" in keys
    assert window.sessions.info.key == "base"  # the open assay does not change behind the technician's back


def _signed_bccd_sessions(tmp_path, model, data, specimens: int = 4, per_class: int = 3):
    """Signed-off sessions of another lab's real cells, every cell verified to its true class."""
    import shutil

    from conftest import DATA

    for k in range(specimens):
        folder = tmp_path / f"B-{k}"
        truth = {}
        for key in ("eosinophil", "lymphocyte", "monocyte", "neutrophil"):
            for path in sorted((DATA / "external_bccd" / key).glob("*.jpg"))[k * per_class:(k + 1) * per_class]:
                folder.mkdir(exist_ok=True)
                shutil.copy(path, folder / path.name)
                truth[path.name] = key
        signed_verified_session(folder, model, data, truth, f"B-{k}")


def _deep_dialog(qtbot, tmp_path, monkeypatch, extra: list[str]):
    import pytest
    from conftest import shipped

    from desktop.core.inference.model import Model
    from desktop.ui import adapt_dialog
    from desktop.ui.adapt_dialog import AdaptDialog
    from desktop.ui.main_window import MainWindow

    if adapt_dialog.trainer_command() is None:
        pytest.skip("the trainer is not installed")
    base = Model(shipped("blood-pbc8.onnx"))
    data = tmp_path / "data"
    _signed_bccd_sessions(tmp_path, base, data)
    window = MainWindow(data_root=data, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                        user_models=tmp_path / "user-models")
    qtbot.addWidget(window)
    window.sessions.load_models((base.info.path.parent,))
    arguments = adapt_dialog.deep_adapt_arguments
    monkeypatch.setattr(adapt_dialog, "deep_adapt_arguments", lambda *a, **k: arguments(*a, **k) + extra)
    installed = []
    dialog = AdaptDialog(window, base, data, window.user_models,
                         lambda p: (installed.append(p), window.lab.site_installed(p)))
    qtbot.addWidget(dialog)
    assert dialog.deep.isEnabled() and dialog.deep.isChecked()  # the trainer is here: whole network is the default
    dialog.site.setText("North lab")
    return window, dialog, installed


def test_adapt_whole_network_runs_the_trainer_and_installs_on_approval(qtbot, tmp_path, monkeypatch):
    import json

    window, dialog, installed = _deep_dialog(qtbot, tmp_path, monkeypatch, ["--max-epochs", "1", "--min-steps", "1"])
    shown = []
    dialog.progress.valueChanged.connect(shown.append)
    dialog.fit()
    qtbot.waitUntil(lambda: dialog.install_button.isEnabled() or dialog.fit_button.isEnabled(), timeout=300_000)
    text = dialog.text.toPlainText()
    assert dialog.install_button.isEnabled(), text
    assert "Site cross-validated" in text and "Whole network" in text and "4 specimens" in text
    assert shown and max(shown) > 0  # progress came through from the trainer's process
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    dialog.approver.setText("Ana")
    dialog.install()
    assert not installed and "another person" in warnings[-1]
    dialog.approver.setText("Dr. Lee")
    if dialog.override.isVisible():  # worse than the base after one epoch: the loss must be accepted by name
        dialog.install()
        assert not installed and "worse than the base model" in warnings[-1]
        dialog.override.setText("test of the install path")
    dialog.install()
    assert installed, warnings
    meta = {p.key: p.value for p in __import__("onnx").load(str(installed[0])).metadata_props}
    site = json.loads(meta["site"])
    assert site["method"] == "deep" and site["approved_by"] == "Dr. Lee" and site["signed_by"] == ["Ana"]
    assert site["fitting"]["specimens"] == 4 and "signed_logins" in site and "signed_by" not in site["source"]
    assert installed[0].stem in [m.key for m in window.sessions.models]
    assert [m.accuracy_label for m in window.sessions.models if m.key == installed[0].stem] == ["site cross-validated accuracy"]


def test_adapt_whole_network_cancel_writes_nothing(qtbot, tmp_path, monkeypatch):
    window, dialog, installed = _deep_dialog(qtbot, tmp_path, monkeypatch, [])
    dialog.fit()
    qtbot.waitUntil(lambda: dialog.progress.value() > 0, timeout=120_000)
    dialog.cancel_fit()
    qtbot.waitUntil(lambda: dialog.fit_button.isEnabled(), timeout=60_000)
    assert "Cancelled" in dialog.text.toPlainText()
    assert not dialog.install_button.isEnabled() and dialog.candidate is None
    assert not list(window.user_models.glob("*.onnx")) and not list(dialog._scratch.glob("*.onnx"))
