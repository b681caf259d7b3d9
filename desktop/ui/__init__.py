"""The PySide6 GUI: a thin layer that shows desktop.core's state and forwards the technician's intent."""
