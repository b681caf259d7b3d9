"""Keys pressed before the window is complete: held, then replayed once it is.

The window is painted before the core loads (MainWindow's two steps), so for a fraction of a second it is on
screen without its shortcuts. A technician who types at once (a class key, Ctrl+O, Ctrl+Q) must not lose the key:
the frame holds every key meant for it and, when the window is complete and the models are loaded, replays each
through the same shortcut or widget it would have reached."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QApplication, QWidget

HELD = (QEvent.Type.KeyPress, QEvent.Type.KeyRelease, QEvent.Type.ShortcutOverride)


class EarlyKeys(QObject):
    """An event filter on one window (the widget and its native window, where the window system's keys arrive
    first), from its frame's creation until `replay()`. Not on the whole application: a Python filter there would
    be called for every event of the first paint."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.window = window
        self.keys: list[tuple[int, Qt.KeyboardModifier, str]] = []
        window.winId()  # its native window now, so the filter is on it before the first key can arrive
        self.watched = (window, window.windowHandle())
        for watched in self.watched:
            watched.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() not in HELD or not self._for_window(obj):
            return False
        if event.type() == QEvent.Type.KeyPress:
            self.keys.append((event.key(), event.modifiers(), event.text()))
        return True  # held: the frame has no shortcut or widget for it yet

    def _for_window(self, obj: QObject) -> bool:
        if obj.isWindowType():  # the QWindow Qt delivers the key to first
            return obj is self.window.windowHandle()
        return obj.isWidgetType() and obj.window() is self.window

    def replay(self) -> None:
        """Stop holding, and press each held key again, in order, on the completed window."""
        for watched in self.watched:
            watched.removeEventFilter(self)
        keys, self.keys = self.keys, []
        for key, modifiers, text in keys:
            press(self.window, key, modifiers, text)


def press(window: QWidget, key: int, modifiers: Qt.KeyboardModifier, text: str) -> None:
    """What the key does in the window: its shortcut (a class key, an action's keys), else the focused widget's."""
    # imported here, not at the top: the frame's first paint does not wait for these types (35 ms)
    from PySide6.QtCore import QKeyCombination
    from PySide6.QtGui import QAction, QKeyEvent, QKeySequence, QShortcut

    sequence = QKeySequence(QKeyCombination(modifiers, Qt.Key(key)))
    for shortcut in window.findChildren(QShortcut):
        if shortcut.isEnabled() and shortcut.key() == sequence:
            shortcut.activated.emit()
            return
    for action in window.findChildren(QAction):
        if action.isEnabled() and sequence in action.shortcuts():
            action.trigger()
            return
    target = QApplication.focusWidget() or window
    for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
        QApplication.sendEvent(target, QKeyEvent(kind, key, modifiers, text))
