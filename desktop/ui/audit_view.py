"""The audit trail of a session: every change, who made it (name and OS account), when and why."""

from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QDialog, QHBoxLayout, QHeaderView, QLineEdit, QPushButton, QTableView, QVBoxLayout

from desktop.core.names import readable
from desktop.core.records.domain import AuditEntry
from desktop.ui.dialogs import fit_to_screen

COLUMNS = ("Time", "Operator", "OS account", "Action", "Cell", "Old", "New", "Reason")


class AuditDialog(QDialog):
    def __init__(self, parent, title: str, entries: list[AuditEntry], on_export) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.model = QStandardItemModel(0, len(COLUMNS))
        self.model.setHorizontalHeaderLabels(COLUMNS)
        for e in entries:
            self.model.appendRow([QStandardItem(v or "") for v in
                                  (e.at, e.operator, e.os_user, e.action, readable(e.file or ""), e.old, e.new, e.reason)])
        self.proxy = QSortFilterProxyModel()
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter: name, action, file, class … (Ctrl+F)")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        export = QPushButton("Export CSV…")
        export.setAutoDefault(False)  # Enter in the filter filters; it does not open the Export dialog
        export.clicked.connect(on_export)
        table = QTableView()
        table.setModel(self.proxy)
        table.setSortingEnabled(True)
        table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        table.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        self.table = table
        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(export)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(table)
        fit_to_screen(self, 1100, 560)
