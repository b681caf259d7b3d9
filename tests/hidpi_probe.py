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


def main_window_cut(window) -> list[str]:
    """Issue 40 G: the find box usable, the summary's table whole (no sideways scrolling), 3 gallery columns."""
    problems = []
    if window.find.width() < 150:
        problems.append(f"the find box is {window.find.width()} px wide")
    text = window.summary.text
    if text.horizontalScrollBar().maximum() > 0:  # the table is wider than the panel
        problems.append(f"the summary's table needs {text.document().idealWidth():.0f} px, "
                        f"{text.viewport().width()} px shown: a column is cut")
    grid = window.gallery.gridSize().width() or window.gallery.sizeHintForColumn(0)
    columns = window.gallery.viewport().width() // max(grid, 1)
    if columns < 3:
        problems.append(f"the gallery shows {columns} columns")
    return problems


def idc_map_cut(app, window) -> list[str]:
    """The IDC slide's map legend: each label whole (the legend wraps instead of cutting "IDC / no / aw")."""
    from desktop.core.resources import resource

    window.sessions.close_session()
    window.sessions.open_folder(resource("samples", "breast-idc-9022"), guess=True)
    while window.sessions.is_classifying():
        app.processEvents()
    app.processEvents()
    problems = []
    for legend in (window.summary.heat.final_legend, window.summary.heat.ai_only):
        if not legend.isVisible():
            problems.append(f"the map's legend {legend.text()[:30]!r} is not shown")
        elif legend.width() < legend.minimumSizeHint().width() or legend.height() < legend.heightForWidth(legend.width()):
            problems.append(f"the map's legend is cut: {legend.width()}x{legend.height()} px for {legend.text()[:40]!r}")
    window.sessions.close_session()
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
    problems += main_window_cut(window)
    if window.thumb_slider.width() < 60:
        problems.append(f"the size slider is {window.thumb_slider.width()} px wide")
    if not window.frameGeometry().intersects(screen.availableGeometry()) or \
            window.width() > screen.availableGeometry().width():
        problems.append(f"the window ({window.width()}x{window.height()}) does not fit the screen")
    problems += idc_map_cut(app, window)
    window.sessions.open_folder(resource("samples", "blood"), guess=True)
    while window.sessions.is_classifying():
        app.processEvents()
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
