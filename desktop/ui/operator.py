"""Who is working: the technician's name, asked once per app start and recorded with every change; it changes only
by File → Change user (a verifier's name serves their verification alone). The name lives in the AppState."""

from __future__ import annotations

import getpass
import logging

from PySide6.QtWidgets import QInputDialog, QLabel

from desktop.ui.app_state import AppState
from desktop.ui.feedback import Feedback
from desktop.ui.settings import WindowSettings

log = logging.getLogger(__name__)


class WhoIsWorking:
    def __init__(self, state: AppState, feedback: Feedback, settings: WindowSettings, label: QLabel) -> None:
        self.state, self.feedback, self.settings, self.label = state, feedback, settings, label
        state.operator_changed.connect(self.show)
        self.show()

    def name(self) -> str | None:
        """The name changes are recorded under; asked for (suggesting the last one) the first time it is needed.
        None when the technician gave none: the change is not made."""
        if self.state.operator is None:
            self._ask(self.settings.operator)
        return self.state.operator

    def exporter(self) -> str:
        """Who exports: the name given at the keyboard, else the computer login (never "(not given)")."""
        return self.state.operator or f"computer login {getpass.getuser()} (no name given)"

    def _ask(self, suggested: str) -> bool:
        name, ok = QInputDialog.getText(self.feedback.parent, "Who is working?",
                                        "Your name (recorded with every change you make):", text=suggested)
        if not ok:
            return False
        if not name.strip():
            self.feedback.error("Your name is needed", "Nothing was changed: each change is recorded with the name of "
                                "the person who made it. Type your name when asked.")
            return False
        self.set(name.strip())
        return True

    def set(self, name: str) -> None:
        self.settings.operator = name
        self.state.set_operator(name)

    def change(self) -> None:
        """File → Change user: the one way the name changes records are made under is changed."""
        before = self.state.operator
        if self._ask("") and before and before != self.state.operator:
            log.info("user changed: %s -> %s (login %s)", before, self.state.operator, getpass.getuser())
            self.feedback.status(f"{self.state.operator} is working now; changes are recorded under this name.", 6000)

    def show(self, *_) -> None:
        """The status bar's 'Working: Ana (login ana)', or who to ask for before the first change."""
        login = getpass.getuser()
        name = self.state.operator
        self.label.setText(f"Working: {name} (login {login})" if name else f"Working: not named yet (login {login})")
