"""File names as the OS gives them and as a person reads them.

A name that is not valid UTF-8 reaches Python as a str with surrogate escapes: that str is
the file's lossless identity (the store keeps its bytes, and the file opens again from it).
People, CSV files and reports get `readable()`: the same text, with each byte that is not
UTF-8 written as \\xNN, so two such files still look different."""

from __future__ import annotations

import os


def readable(name: str) -> str:
    """`name` as valid text: bytes that are not UTF-8 shown as \\xNN (unchanged when already valid)."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file system gave us
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
