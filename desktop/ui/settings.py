"""The window's remembered settings, typed: each key, its type and its default are named once here."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

RECENT_FOLDERS = 8
THUMB = 96  # default thumbnail size (px); the technician zooms between THUMB_SIZES
THUMB_SIZES = (64, 80, 96, 128, 160, 192)


class WindowSettings:
    """QSettings behind typed properties (an INI file gives every value back as text)."""

    def __init__(self, store: QSettings) -> None:
        self.store = store

    def _text(self, key: str, default: str = "") -> str:
        value = self.store.value(key, default)
        return default if value is None else str(value)

    def sync(self) -> None:
        self.store.sync()

    @property
    def geometry(self) -> QByteArray | None:
        return self.store.value("geometry")

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self.store.setValue("geometry", value)

    @property
    def splitter(self) -> QByteArray | None:
        return self.store.value("splitter")

    @splitter.setter
    def splitter(self, value: QByteArray) -> None:
        self.store.setValue("splitter", value)

    @property
    def thumb_size(self) -> int:
        size = int(self._text("thumb_size", str(THUMB)))
        return size if size in THUMB_SIZES else THUMB

    @thumb_size.setter
    def thumb_size(self, value: int) -> None:
        self.store.setValue("thumb_size", int(value))

    @property
    def file_names(self) -> bool:
        return self._text("file_names", "false").lower() == "true"

    @file_names.setter
    def file_names(self, value: bool) -> None:
        self.store.setValue("file_names", bool(value))

    @property
    def operator(self) -> str:
        return self._text("operator")

    @operator.setter
    def operator(self, value: str) -> None:
        self.store.setValue("operator", value)

    @property
    def assay(self) -> str:
        return self._text("assay")

    @assay.setter
    def assay(self, value: str) -> None:
        self.store.setValue("assay", value)

    @property
    def bin(self) -> str:
        return self._text("bin")

    @bin.setter
    def bin(self, value: str) -> None:
        self.store.setValue("bin", value)

    @property
    def last_folder(self) -> str:
        return self._text("last_folder", str(Path.home()))

    @property
    def export_dir(self) -> str:
        return self._text("export_dir", str(Path.home()))

    @export_dir.setter
    def export_dir(self, value: Path | str) -> None:
        self.store.setValue("export_dir", str(value))

    @property
    def lis_folder(self) -> Path | None:
        """The LIS drop folder, when one is chosen."""
        folder = self._text("lis_folder")
        return Path(folder) if folder else None

    @lis_folder.setter
    def lis_folder(self, value: Path | str) -> None:
        self.store.setValue("lis_folder", str(value))

    @property
    def recent(self) -> list[str]:
        recent = self.store.value("recent") or []
        if isinstance(recent, str):  # an INI file gives back a one-item list as a plain string
            recent = [recent]
        return [str(r) for r in recent if r]

    def remember_folder(self, folder: Path) -> None:
        recent = [str(folder)] + [r for r in self.recent if r != str(folder)]
        self.store.setValue("recent", recent[:RECENT_FOLDERS])
        self.store.setValue("last_folder", str(folder))
