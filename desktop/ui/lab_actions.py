"""The lab tools' entry points: Verification of the model on this lab's signed-off sessions, and Adapt to this lab
(a site model), which reloads the models once one is installed."""

from __future__ import annotations

from pathlib import Path

from desktop.core.policy import lab_policy
from desktop.ui.app_state import AppState
from desktop.ui.feedback import Feedback
from desktop.ui.session_controller import SessionController


class LabActions:
    def __init__(self, state: AppState, feedback: Feedback, sessions: SessionController, data_root: Path,
                 user_models: Path) -> None:
        self.state, self.feedback, self.sessions = state, feedback, sessions
        self.data_root, self.user_models = data_root, user_models

    def show_verification(self) -> None:
        from desktop.ui.lab_tools import VerificationDialog

        info = self.state.info
        if info is not None:
            VerificationDialog(self.feedback.parent, self.sessions.model(info), self.data_root).exec()

    def show_adapt(self) -> None:
        from desktop.ui.adapt_dialog import AdaptDialog

        info = self.state.info
        if info is not None:
            AdaptDialog(self.feedback.parent, self.sessions.model(info), self.data_root, self.user_models,
                        self.site_installed, allow_same_login=lab_policy().allow_signer_login).exec()

    def site_installed(self, path: Path) -> None:
        """A site model was installed: the models are found again, the assay in use stays selected."""
        folders = self.sessions.model_folders
        if folders and self.user_models not in folders:
            folders = (*folders, self.user_models)
        self.sessions.load_models(folders)
        self.feedback.status(f"Site model installed: {path.name}. Choose it in the Assay list; the base model stays "
                             "there too.", 10_000)
