"""Run by test_high_dpi.py in its own process (the scale factor is read when Qt starts): the main
window and every dialog on a 1366x768 screen at QT_SCALE_FACTOR, printing what does not fit as JSON."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QAbstractButton, QApplication, QDialog, QWidget

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def outside(widget: QWidget, screen) -> list[str]:
    """Every visible button of `widget` (a window) that does not lie inside the screen."""
    area = screen.availableGeometry()
    problems = []
    for button in widget.findChildren(QAbstractButton):
        if not button.isVisibleTo(widget) or not button.isVisible():
            continue
        top_left = button.mapToGlobal(button.rect().topLeft())
        bottom_right = button.mapToGlobal(button.rect().bottomRight())
        if not (area.contains(top_left) and area.contains(bottom_right)):
            problems.append(f"{type(widget).__name__} {widget.windowTitle()!r}: button {button.text()!r} at "
                            f"{top_left.x()},{top_left.y()}–{bottom_right.x()},{bottom_right.y()} is off the "
                            f"{area.width()}x{area.height()} screen")
    return problems


def shown(dialog: QWidget) -> QWidget:
    dialog.show()
    QApplication.processEvents()
    return dialog


def main() -> None:
    app = QApplication([])
    from desktop.core.resources import resource
    from desktop.ui.audit_view import AuditDialog
    from desktop.ui.dialogs import IdentityForm
    from desktop.ui.lab_tools import VerificationDialog
    from desktop.ui.main_window import MainWindow
    from desktop.ui.preview import CellViewer

    tmp = Path(tempfile.mkdtemp())
    window = MainWindow(data_root=tmp / "data", settings=QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    window.show()
    window.sessions.load_models((resource("models"),))
    window.sessions.open_folder(resource("samples", "blood"), guess=False)
    while window.sessions.is_classifying():
        app.processEvents()
    app.processEvents()
    screen = window.screen()
    problems = outside(window, screen)
    if window.find.width() < 160:
        problems.append(f"the find box is {window.find.width()} px wide")
    if window.thumb_slider.width() < 60:
        problems.append(f"the size slider is {window.thumb_slider.width()} px wide")
    if not window.frameGeometry().intersects(screen.availableGeometry()) or \
            window.width() > screen.availableGeometry().width():
        problems.append(f"the window ({window.width()}x{window.height()}) does not fit the screen")
    info = window.sessions.info
    dialogs = [
        CellViewer(window, window.sessions.folder, info, window.proxy, 0, lambda *a: False, lambda *a: False),
        AuditDialog(window, "Audit trail", window.sessions.session.audit(), lambda: None),
        VerificationDialog(window, window.sessions.model(info), tmp / "data"),
        IdentityForm(window, "Sign off", "S-1", "", "Ana", note="Signing off makes the session read-only."),
    ]
    for dialog in dialogs:
        shown(dialog)
        problems += outside(dialog, screen)
        dialog.close() if not isinstance(dialog, QDialog) else dialog.reject()
    def check_modal() -> None:
        modal = QApplication.activeModalWidget()
        problems.extend(outside(modal, screen) if modal is not None else ["F1 showed no dialog"])
        if modal is not None:
            modal.close()

    from PySide6.QtCore import QTimer

    QTimer.singleShot(300, check_modal)
    window.show_shortcuts()  # F1, as the technician opens it
    print(json.dumps({"screen": [screen.availableGeometry().width(), screen.availableGeometry().height()],
                      "problems": problems}))
    window.sessions.close_session()


if __name__ == "__main__":
    main()
