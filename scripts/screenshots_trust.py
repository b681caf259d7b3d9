"""Screenshots of the session record and the lab tools, from the real window.

Run under a virtual display:  xvfb-run -s "-screen 0 1400x900x24" .venv/bin/python -m scripts.screenshots_trust
Writes docs/screenshots/{signed-banner,audit-trail,verification-report,adapt-dialog}.png.
The verification and adaptation shots use a lab made here: the 100 CellaVision-blog cells of
external_zheng, signed off in four sessions with the technicians' labels as final calls.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
LAB = ROOT.parent / "shared" / "data" / "external_zheng" / "cellavision_blog"


def pump(app, seconds):
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.01)


def signed_lab_sessions(tmp: Path, data: Path) -> None:
    """Four signed-off sessions whose final calls are the dataset's labels (as a lab's technicians would give)."""
    from desktop.core.records.session import Session

    files = sorted(LAB.glob("*/*.jpg"))
    for n in range(4):
        folder = tmp / f"Smear CV-{n + 1}"
        folder.mkdir()
        truth = {}
        for path in files[n::4]:
            shutil.copy(path, folder / path.name)
            truth[path.name] = path.parent.name
        s = Session.open(folder, "blood-pbc8", data)
        s.classify()
        for c in s.cells():
            if c.ai_class != truth[c.file]:
                s.reclassify([c.file], truth[c.file], "A. Ruiz")
        s.confirm([c.file for c in s.cells() if c.needs_review], "A. Ruiz")
        s.set_identity(f"CV-{n + 1}", "", "A. Ruiz")
        s.sign_off("A. Ruiz")
        s.close()


def main() -> None:
    from PySide6.QtWidgets import QInputDialog

    from desktop.ui.adapt_dialog import AdaptDialog
    from desktop.ui.audit_view import AuditDialog
    from desktop.ui.dialogs import IdentityForm
    from desktop.ui.lab_tools import VerificationDialog
    from desktop.ui.main_window import MainWindow

    OUT.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv)
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "data"
    from PySide6.QtWidgets import QMessageBox

    QInputDialog.getText = staticmethod(lambda *a, **k: ("A. Ruiz", True))
    QMessageBox.question = staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes)  # "below target: sign off?"
    IdentityForm.ask = classmethod(lambda cls, *a, **k: ("B-2026-1187", "", "A. Ruiz"))
    window = MainWindow(data_root=data, settings=QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    window.resize(1400, 860)
    window.show()
    window.sessions.load_models()
    folder = tmp / "Smear 2026-11-26"
    shutil.copytree(ROOT / "resources" / "samples" / "blood", folder)
    window.sessions.open_folder(folder)
    while window.sessions.is_classifying():
        pump(app, 0.1)
    cells = window.sessions.session.cells()
    window.sessions.session.reclassify([cells[0].file], "monocyte", "A. Ruiz")
    window.sessions.session.confirm([c.file for c in window.sessions.session.cells() if c.needs_review], "A. Ruiz")
    window.records.sign_off()
    window.sessions.close_session()
    (folder / sorted(p.name for p in folder.iterdir())[3]).unlink()  # the folder changes after sign-off
    shutil.copy(ROOT / "resources" / "samples" / "blood" / sorted(p.name for p in folder.iterdir())[0],
                folder / "late_scan_0001.jpg")
    window.sessions.open_folder(folder)
    while window.sessions.is_classifying():
        pump(app, 0.1)
    window.thumbnails.wait()
    pump(app, 1.0)
    window.grab().save(str(OUT / "signed-banner.png"))
    audit = AuditDialog(window, f"Audit trail — {folder.name}", window.sessions.session.audit(), lambda: None)
    audit.show()
    pump(app, 0.5)
    audit.grab().save(str(OUT / "audit-trail.png"))
    audit.close()

    signed_lab_sessions(tmp, data)
    model = window.sessions.model(window.sessions.info)
    report = VerificationDialog(window, model, data)
    report.show()
    pump(app, 0.5)
    report.grab().save(str(OUT / "verification-report.png"))
    report.close()
    adapt = AdaptDialog(window, model, data, tmp / "models", lambda p: None)
    adapt.site.setText("cv-blog-lab")
    adapt.approver.setText("Dr. M. Lee")
    adapt.show()
    adapt.fit()
    while not adapt.install_button.isEnabled():
        pump(app, 0.1)
    pump(app, 0.5)
    adapt.grab().save(str(OUT / "adapt-dialog.png"))
    adapt.close()
    window.close()
    print("screenshots in", OUT)


if __name__ == "__main__":
    main()
