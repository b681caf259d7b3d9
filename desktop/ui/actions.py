"""The window's menus and toolbar, and the one shortcut table: each key is bound and listed in the
help (F1) from the same row, so the help can never name a key that does nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow

from desktop.ui import about


@dataclass(frozen=True)
class Keys:
    """One line of the help: the keys as shown, what they do, and the actions they bind."""

    shown: str
    what: str
    binds: dict[str, tuple[str, ...]] = field(default_factory=dict)  # action name -> key sequences


SHORTCUTS = (
    Keys("Ctrl+O", "Open a folder of images", {"open": ("Ctrl+O",)}),
    Keys("1 … 8", "Reclassify the selected cells (keys shown beside each class); the next cell is selected"),
    Keys("Enter", "Confirm the call of the selected cells; the next cell is selected", {"confirm": ("Return", "Enter")}),
    Keys("R / N", "Go to the Review bin / next cell awaiting review", {"review_bin": ("R",), "next": ("N",)}),
    Keys("Space / double-click", "Large view: ←/→ previous/next, 1 … 8 reclassify, Enter confirm, Esc close",
         {"preview": ("Space",)}),
    Keys("Ctrl+F", "Find cells by file name", {"find": ("Ctrl+F",)}),
    Keys("Ctrl+wheel / Ctrl+= Ctrl+-", "Thumbnail size", {"zoom_in": ("Ctrl+=",), "zoom_out": ("Ctrl+-",)}),
    Keys("Ctrl+A", "Select all cells in the current bin"),
    Keys("Ctrl+Z / Ctrl+Shift+Z (Ctrl+Y)", "Undo / redo", {"undo": ("Ctrl+Z",), "redo": ("Ctrl+Shift+Z", "Ctrl+Y")}),
    Keys("Ctrl+E", "Export CSV (per image and summary)", {"export": ("Ctrl+E",)}),
    Keys("Ctrl+P", "Printable PDF report", {"report": ("Ctrl+P",)}),
    Keys("Ctrl+Shift+S", "Sign off", {"signoff": ("Ctrl+Shift+S",)}),
    Keys("Ctrl+I", "Specimen and patient ID", {"identity": ("Ctrl+I",)}),
    Keys("Ctrl+Shift+A", "Audit trail", {"audit": ("Ctrl+Shift+A",)}),
    Keys("Ctrl+Shift+U", "Change user (who is working; shown at the bottom right)", {"change_user": ("Ctrl+Shift+U",)}),
    Keys("Esc", "Cancel classification (closes the large view when it is open)", {"cancel": ("Esc",)}),
    Keys("F1", "This list", {"shortcuts": ("F1",)}),
    # Qt's standard Quit key is empty on Windows and on the offscreen platform: Ctrl+Q is bound everywhere.
    Keys("Ctrl+Q", "Quit (everything done is already saved)", {"quit": ("Ctrl+Q",)}),
)


def keys_of(name: str) -> tuple[str, ...]:
    """The key sequences the table binds to an action (none for most menu entries)."""
    return next((row.binds[name] for row in SHORTCUTS if name in row.binds), ())


def shortcuts_html() -> str:
    rows = "".join(f"<tr><td><b>{row.shown}</b></td><td>{row.what}</td></tr>" for row in SHORTCUTS)
    return f"<table cellpadding=4>{rows}</table>"


class Actions:
    """Every QAction of the window, in its menus and toolbar; the slots are the controllers' own."""

    def __init__(self, window: QMainWindow) -> None:
        self.window = window
        w, sessions, review, records = window, window.sessions, window.review, window.records
        exports, lab, state = window.exports, window.lab, window.state

        def action(name: str, text: str, slot: Callable, tip: str = "") -> QAction:
            made = QAction(text, w)
            made.setShortcuts([QKeySequence(k) for k in keys_of(name)])
            made.setToolTip(tip or text)
            made.triggered.connect(slot)
            setattr(self, name, made)
            return made

        action("open", "&Open folder…", sessions.choose_folder, "Open a folder (Ctrl+O)")
        action("open_slide", "Open &slide…", sessions.choose_slide, "Open a whole-slide image (.svs, .ndpi, tiled TIFF …)")
        action("export", "&Export CSV…", exports.export_csv)
        action("report", "&PDF report…", exports.export_pdf)
        action("hl7", "&HL7 v2 message (ORU^R01)…", exports.export_hl7)
        action("fhir", "&FHIR Bundle…", exports.export_fhir)
        action("change_user", "Change &user…", window.who.change, "Who is working: every change is recorded "
               "under this name")
        action("lis_folder", "&LIS export folder…", exports.choose_lis_folder,
               "Where the HL7 and FHIR files are written after each sign-off")
        action("signoff", "&Sign off…", records.sign_off)
        action("reopen", "&Reopen signed-off session…", records.reopen)
        action("verify", "&Verify (second person)…", records.verify)
        action("identity", "Specimen and &patient ID…", records.edit_identity)
        action("audit", "&Audit trail…", records.show_audit)
        action("confirm", "&Confirm call", review.single_key(review.confirm_selected))
        action("preview", "&Large view", review.single_key(review.preview))
        action("next", "&Next awaiting review", review.single_key(review.next_unreviewed))
        action("review_bin", "Go to the &Review bin", review.single_key(review.go_to_review))
        action("find", "&Find by file name", lambda: (w.find.setFocus(), w.find.selectAll()))
        action("zoom_in", "Larger thumbnails", lambda: w.gallery.zoom_requested.emit(1))
        action("zoom_out", "Smaller thumbnails", lambda: w.gallery.zoom_requested.emit(-1))
        action("cancel", "Cancel classification", sessions.cancel, "Stop classifying; what is done is kept")
        action("undo", "&Undo", review.undo)
        action("redo", "&Redo", review.redo)
        action("quit", "&Quit", w.close)
        action("shortcuts", "&Keyboard shortcuts", w.show_shortcuts)
        action("card", "&Model card…", lambda: about.show_model_card(w))
        action("about", "&About SlideTally", lambda: about.show_about(w))
        action("verification", "&Verification…", lab.show_verification,
               "This model's calls against this lab's signed-off final calls")
        action("adapt", "&Adapt to this lab…", lab.show_adapt, "Fit a site model on this lab's verified cells "
               "(lab director)")
        self.cancel.setEnabled(False)
        state.classifying_changed.connect(self.cancel.setEnabled)
        state.record_changed.connect(lambda record: self.show_record_state(record, altered=state.altered))
        self.show_record_state(None)
        w.addAction(self.cancel)  # Esc works wherever the focus is in the window
        for a in (self.undo, self.redo):
            a.setEnabled(False)
        w.undo_stack.canUndoChanged.connect(self.undo.setEnabled)
        w.undo_stack.canRedoChanged.connect(self.redo.setEnabled)
        for a in (self.confirm, self.preview, self.next, self.review_bin):
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)  # wherever the focus is (see single_key)
            w.addAction(a)
        self._menus()
        self._toolbar()

    def _menus(self) -> None:
        bar = self.window.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.open)
        file_menu.addAction(self.open_slide)
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addSeparator()
        file_menu.addMenu("E&xport").addActions([self.export, self.report, self.hl7, self.fhir])
        file_menu.addAction(self.lis_folder)
        file_menu.addSeparator()
        file_menu.addAction(self.change_user)
        file_menu.addSeparator()
        file_menu.addAction(self.quit)
        edit = bar.addMenu("&Edit")
        edit.addActions([self.undo, self.redo])
        edit.addSeparator()
        edit.addActions([self.confirm, self.next, self.review_bin, self.preview])
        edit.addSeparator()
        edit.addActions([self.find, self.zoom_in, self.zoom_out, self.cancel])
        review = bar.addMenu("&Review")
        review.addActions([self.identity, self.signoff, self.verify, self.reopen])
        review.addSeparator()
        review.addAction(self.audit)
        tools = bar.addMenu("&Tools")
        tools.addActions([self.verification, self.adapt])
        tools.addSeparator()
        bar.addMenu("&Help").addActions([self.shortcuts, self.card, self.about])

    def _toolbar(self) -> None:
        bar = self.window.addToolBar("Main")
        bar.setObjectName("main-toolbar")
        bar.setMovable(False)
        bar.addWidget(QLabel(" Assay: "))
        bar.addWidget(self.window.assay)
        bar.addAction(self.open)
        bar.addSeparator()
        bar.addActions([self.undo, self.redo])
        bar.addSeparator()
        bar.addActions([self.export, self.report, self.signoff])
        for action, short in ((self.open, "Open"), (self.export, "CSV"), (self.report, "PDF"), (self.signoff, "Sign off")):
            action.setIconText(short)  # short toolbar labels: nothing hides behind » on a small screen

    def rebuild_recent(self, recent: list[str], open_folder: Callable) -> None:
        self.recent_menu.clear()
        for path in recent[:8]:
            self.recent_menu.addAction(path, lambda p=path: open_folder(p))
        self.recent_menu.setEnabled(bool(recent))

    def show_record_state(self, record, altered: bool = False) -> None:
        """Which record actions apply: sign-off and identity while open, reopen and verify once signed;
        none on a record altered outside SlideTally."""
        signed = record is not None and record.signed
        self.signoff.setEnabled(record is not None and not signed and not altered)
        self.identity.setEnabled(record is not None and not signed and not altered)
        self.reopen.setEnabled(signed and not altered)
        self.verify.setEnabled(signed and not record.verified_by and not altered)
