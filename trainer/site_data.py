"""A lab's verified cells as arrays for fine-tuning, read with the app's own preprocessing and
grouped as the core groups them (`desktop/core/lab/site_cells.py`): by specimen, byte-identical
images always one group."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from desktop.core.inference.imaging import UnreadableImage, load_prepared
from desktop.core.inference.model_info import ModelInfo
from desktop.core.lab.site_cells import VerifiedCell, cells_from_folder, has_specimens


@dataclass(frozen=True)
class SiteArrays:
    images: np.ndarray  # uint8 [n, H, W, 3], prepared as the app prepares them
    labels: np.ndarray  # [n] class index (the technicians' final call)
    groups: np.ndarray  # [n] specimen; byte-identical images share one
    signers: frozenset[str]  # who signed the sessions the cells came from (empty for a folder)
    grouped_by_specimen: bool  # False: DIR/<class>/<image>, every image its own group (optimistic)
    problems: tuple[str, ...]  # images that could not be used, one line each

    @property
    def specimens(self) -> int:
        return len(np.unique(self.groups))


def load_cells(cells: list[VerifiedCell], info: ModelInfo, signers: frozenset[str] = frozenset(),
               grouped_by_specimen: bool = True) -> SiteArrays:
    images, kept, problems = [], [], []
    for cell in cells:
        try:
            images.append(load_prepared(cell.path, info.input))
            kept.append(cell)
        except (UnreadableImage, OSError) as exc:
            problems.append(f"{cell.path}: {exc}")
    if not images:
        raise ValueError("none of the verified cells' images could be read" + (f" ({problems[0]})" if problems else ""))
    return SiteArrays(np.stack(images), np.array([c.label for c in kept]), np.array([c.group for c in kept]),
                      signers, grouped_by_specimen, tuple(problems))


def from_folder(folder: Path, info: ModelInfo) -> SiteArrays:
    """`DIR/<specimen>/<class key>/<image>` (grouped by specimen) or `DIR/<class key>/<image>`."""
    return load_cells(cells_from_folder(folder, info), info, grouped_by_specimen=has_specimens(folder, info))
