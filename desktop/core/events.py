"""Plain-Python events, the way napari's evented models work: the core emits, anyone
(the Qt adapter, a test, the CLI) connects a callback. No Qt here."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Event:
    """One kind of event. Callbacks run in the emitting thread, in connection order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[Callable[..., Any]] = []
        self._lock = threading.Lock()

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        with self._lock:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any] | None = None) -> None:
        """Remove one callback, or all of them."""
        with self._lock:
            self._callbacks = [] if callback is None else [c for c in self._callbacks if c != callback]

    @property
    def connected(self) -> bool:
        """Whether anyone listens: an emitter may skip building what nobody reads."""
        return bool(self._callbacks)

    def emit(self, *args: Any) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback(*args)
