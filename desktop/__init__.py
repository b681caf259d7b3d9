"""SlideTally: CNN pre-classification of microscope images for laboratory review."""

from pathlib import Path


def _version() -> str:
    """pyproject.toml is the one place the version is written: read it in a checkout, else the installed metadata."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]
    from importlib.metadata import version

    return version("slidetally")


__version__ = _version()
