"""The technician's review in the gallery: select, reclassify (key, menu or drag), confirm, undo,
the next cell awaiting review, the large view, and a click on the slide map. Every change is the
Session's (through undoable commands); this only turns keys and clicks into those calls. The open
session, its model and its cells come from the AppState."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut, QUndoCommand, QUndoStack
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QLineEdit, QMenu, QTextEdit

from desktop.core.errors import SessionLocked, SlideTallyError
from desktop.core.inference.model_info import ModelInfo
from desktop.core.inference.slide import cell_offset
from desktop.core.records.domain import Cell
from desktop.core.records.review import REVIEW, ranked_classes
from desktop.core.report.summary import slide_grid
from desktop.ui import commands
from desktop.ui.app_state import AppState
from desktop.ui.feedback import Feedback
from desktop.ui.gallery import CellRole
from desktop.ui.operator import WhoIsWorking
from desktop.ui.panes import Panes
from desktop.ui.preview import CellViewer
from desktop.ui.settings import WindowSettings


class ReviewActions:
    def __init__(self, state: AppState, panes: Panes, feedback: Feedback, who: WhoIsWorking, settings: WindowSettings,
                 undo_stack: QUndoStack) -> None:
        self.state, self.feedback, self.who, self.settings, self.undo_stack = state, feedback, who, settings, undo_stack
        self.gallery, self.proxy, self.bins, self.find = panes.gallery, panes.proxy, panes.bins, panes.find
        self.hotkeys: list[QShortcut] = []
        self.gallery.customContextMenuRequested.connect(self.context_menu)
        self.gallery.doubleClicked.connect(lambda _: self.preview())
        self.bins.currentItemChanged.connect(self.bin_changed)
        self.bins.dropped.connect(self.dropped_on_bin)
        panes.summary.heat.tile_clicked.connect(self.tile_clicked)
        panes.summary.heat.tile_opened.connect(self.tile_opened)
        state.model_changed.connect(self.rebuild_bins)
        state.session_changed.connect(self._session_changed)
        state.classifying_changed.connect(self._classifying_changed)

    @property
    def _session(self):
        return self.state.session

    def _session_changed(self, session) -> None:
        """A session opened: keys ready on its first cell awaiting review. Opened or closed: nothing to undo."""
        self.undo_stack.clear()
        if session is not None:
            self.focus_first()

    def _classifying_changed(self, running: bool) -> None:
        if not running and not self.gallery.selected_rows():
            self.focus_first()

    # --- bins and the class hotkeys -----------------------------------------------------------
    def rebuild_bins(self, info: ModelInfo | None) -> None:
        """The class bins and their number keys for this model."""
        for shortcut in self.hotkeys:
            shortcut.setParent(None)
        self.hotkeys = []
        self.bins.fill(info, self.settings.bin)
        for c in info.classes if info is not None else ():
            if c.hotkey:
                # Anywhere in the window: a text field keeps its typed digits (Qt gives it the key
                # first), an open menu keeps its mnemonics (the window is not the active one then).
                shortcut = QShortcut(QKeySequence(c.hotkey), self.feedback.parent)
                shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
                shortcut.activated.connect(self.single_key(lambda key=c.key: self.reclassify_selected(key)))
                self.hotkeys.append(shortcut)

    def single_key(self, act: Callable[[], None]) -> Callable[[], None]:
        """A single-key action: from a text field (the find box) the key first takes the technician
        to the gallery, whose selected cell it then acts on."""
        def run() -> None:
            focus = QApplication.focusWidget()
            if isinstance(focus, (QLineEdit, QAbstractSpinBox, QTextEdit)):
                self.gallery.setFocus()
                return
            act()
        return run

    def focus_first(self) -> None:
        """Keys ready when a folder opens: the first cell awaiting review (else the first cell)
        selected, the gallery focused."""
        first = self._first_shown(lambda c: c.needs_review)
        self.gallery.setFocus()
        if self.proxy.rowCount():
            self.gallery.select_row(0 if first is None else first)

    def _first_shown(self, wanted) -> int | None:
        """The gallery row of the first shown cell for which `wanted(cell)` holds. It walks the source's
        cells, not the proxy's rows: asking the proxy row by row took 145 ms at 20,000 cells. The proxy
        keeps the source's order, so the first one shown is the first one found."""
        proxy, model = self.proxy, self.proxy.sourceModel()
        shown = (proxy.mapFromSource(model.index(r)).row() for r, c in enumerate(self.state.cells.cells) if wanted(c))
        return next((r for r in shown if r >= 0), None)

    def bin_changed(self, current, _previous) -> None:
        """A bin chosen: its cells shown and its first cell selected, so Space, Enter and the digits act at once."""
        if current is not None:
            self.proxy.set_bin(current.data(Qt.ItemDataRole.UserRole))
            if self.proxy.rowCount():
                self.gallery.select_row(0)

    def dropped_on_bin(self, ids: list[int], key: str) -> None:
        if key and not key.startswith("__"):
            wanted = set(ids)
            self.reclassify([c.file for c in self.state.cells.cells if c.id in wanted], key)

    # --- selection ----------------------------------------------------------------------------
    def selected_cells(self) -> list[Cell]:
        gallery, proxy = self.gallery, self.proxy
        gallery.select_current_if_none()
        return [proxy.data(i, CellRole) for i in gallery.selectionModel().selectedIndexes()]

    def _cell_at(self, row: int) -> Cell | None:
        proxy = self.proxy
        return proxy.data(proxy.index(row, 0), CellRole) if row < proxy.rowCount() else None

    def _advance(self, rows: list[int], files: list[str]) -> None:
        """After an action, select the next cell: the one after the acted-on cell, or the one
        now in its place when the cell left the bin (the Review bin empties as you go)."""
        if not rows:
            return
        here = self._cell_at(rows[0])
        self.gallery.select_row(rows[-1] + 1 if here is not None and here.file in files else rows[0])

    def next_unreviewed(self) -> None:
        """Select the next cell awaiting review after the current one; from another bin, go to Review."""
        rows = self.gallery.selected_rows()
        for row in range(rows[-1] + 1 if rows else 0, self.proxy.rowCount()):
            if self._cell_at(row).needs_review:
                self.gallery.select_row(row)
                return
        if any(c.needs_review for c in self.state.cells.cells):
            self.go_to_review()
        else:
            self.feedback.status("Nothing is awaiting review.", 4000)

    def go_to_review(self) -> None:
        """The Review bin, its first (least confident) cell selected, keys ready."""
        row = self.bins.row_of(REVIEW)
        if row >= 0:
            self.bins.setCurrentRow(row)
            self.gallery.setFocus()
            self.gallery.select_row(0)

    # --- changes, undoable ---------------------------------------------------------------------
    def refuse_if_signed(self) -> bool:
        """Said and True when the open session takes no change (signed off, or altered outside SlideTally)."""
        reason = self.state.why_read_only()
        if reason is not None:
            self.feedback.error(*reason)
        return reason is not None

    def _push(self, make_command: Callable[[str], QUndoCommand | None]) -> bool:
        """Carry out an action on the session; only an action that happened enters the undo stack."""
        if self.refuse_if_signed():
            return False
        operator = self.who.name()
        if operator is None:
            return False
        try:
            command = make_command(operator)
        except SessionLocked as exc:
            self.feedback.error("Session signed off", str(exc))
            return False
        except SlideTallyError as exc:
            self.feedback.error("That did not work", str(exc))
            return False
        if command is not None:
            self.undo_stack.push(command)
        return True

    def undo(self) -> None:
        if self.undo_stack.canUndo() and not self.refuse_if_signed():
            self.undo_stack.undo()

    def redo(self) -> None:
        if self.undo_stack.canRedo() and not self.refuse_if_signed():
            self.undo_stack.redo()

    def reclassify_selected(self, key: str) -> None:
        rows = self.gallery.selected_rows()
        files = [c.file for c in self.selected_cells() if not c.unreadable]
        if self.reclassify(files, key):
            self._advance(rows, files)

    def reclassify(self, files: list[str], key: str) -> bool:
        info = self.state.info
        if not files or self._session is None or info is None:
            return False
        label, session = info.label_of(key), self._session
        done = self._push(lambda operator: commands.reclassify(session, files, key, label, operator))
        if done:
            self.feedback.status(f"{len(files)} {info.item_noun} reclassified as {label}.", 4000)
        return done

    def confirm_selected(self) -> None:
        rows = self.gallery.selected_rows()
        cells = [c for c in self.selected_cells() if not c.unreadable]
        unfamiliar = sum(c.unfamiliar and not c.confirmed for c in cells)
        if len(cells) > 1 and unfamiliar and not self.feedback.ask(
                "Confirm Unfamiliar cells?", f"Confirm the calls of {len(cells)} cells? {unfamiliar} of them are "
                "Unfamiliar: the model has not seen cells like them, and its call is often wrong. Look at them one by "
                "one (Space) unless you are sure."):
            return
        files = [c.file for c in cells]
        if self.confirm_files(files):
            self._advance(rows, files)

    def confirm_files(self, files: list[str]) -> bool:
        if not files or self._session is None:
            return False
        session = self._session
        return self._push(lambda operator: commands.confirm(session, files, operator))

    # --- looking closer ------------------------------------------------------------------------
    def preview(self) -> None:
        info, folder = self.state.info, self.state.folder
        current = self.gallery.currentIndex()
        rows = self.gallery.selected_rows()
        row = current.row() if current.isValid() else (rows[0] if rows else -1)
        if row < 0 or folder is None or info is None:
            return
        viewer = CellViewer(self.feedback.parent, folder, info, self.proxy, row, self.reclassify, self.confirm_files)
        viewer.exec()
        self.gallery.select_row(viewer.row)

    def tile_opened(self, column: int, row: int) -> None:
        """A double-click on the slide map: that patch selected, then shown large."""
        if self.tile_clicked(column, row):
            self.preview()

    def tile_clicked(self, column: int, row: int) -> bool:
        """A click on the slide map selects that patch in the gallery (All images, no file filter);
        False when no patch lies there (background, or not classified yet)."""
        info = self.state.info
        if info is None:
            return False
        grid = slide_grid(self.state.cells.cells, info)
        x, y = grid.offset(column, row)
        self.find.clear()
        self.bins.setCurrentRow(0)

        def on_tile(cell: Cell) -> bool:
            offset = None if cell.unreadable or cell.missing else cell_offset(cell)
            return offset is not None and grid.place(offset) == (column, row)

        found = self._first_shown(on_tile)
        if found is None:
            self.feedback.status(f"No patch at x={x}, y={y} (background, or not classified)", 5000)
            return False
        self.gallery.select_row(found)
        self.gallery.setFocus()
        self.feedback.status(f"Patch at x={x}, y={y}: {self._cell_at(found).file}", 5000)
        return True

    def context_menu(self, pos) -> None:
        info = self.state.info
        index = self.gallery.indexAt(pos)
        if not index.isValid() or info is None:
            return
        cell = self.proxy.data(index, CellRole)
        menu = QMenu(self.feedback.parent)
        if not cell.unreadable:
            menu.addAction("Confirm AI call", self.confirm_selected)
            menu.addSeparator()
            for key, p in ranked_classes(cell, info.class_keys):
                c = next(c for c in info.classes if c.key == key)
                menu.addAction(f"{c.label}  ({p:.0%})  [{c.hotkey}]", lambda k=key: self.reclassify_selected(k))
            menu.addSeparator()
        menu.addAction("Large view", self.preview)
        menu.exec(self.gallery.viewport().mapToGlobal(pos))
