"""A lab's verified cells as arrays for fine-tuning: read with the app's own preprocessing,
grouped so that cross-validation never puts one specimen (or one image) on both sides.

Groups: the specimen (a session, or `DIR/<specimen>/<class>/<image>`); images with the same
bytes (copies, hard links) are merged into one group whatever their specimen.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from desktop.core.inference.imaging import UnreadableImage, decode_prepared, read_bytes
from desktop.core.inference.model import ModelInfo


@dataclass(frozen=True)
class SiteArrays:
    images: np.ndarray  # uint8 [n, H, W, 3], prepared as the app prepares them
    labels: np.ndarray  # [n] class index (the technicians' final call)
    groups: np.ndarray  # [n] specimen id; byte-identical images share one
    signers: frozenset[str]  # who signed the sessions the cells came from (empty for a folder)
    grouped_by_specimen: bool  # False: DIR/<class>/<image>, every image its own group (optimistic)
    problems: tuple[str, ...]  # images that could not be used, one line each

    @property
    def specimens(self) -> int:
        return len(np.unique(self.groups))


def merge_identical(groups: list[str], digests: list[str]) -> np.ndarray:
    """Union of specimen groups that share an image's bytes: one group per connected set."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first: dict[str, str] = {}
    for group, digest in zip(groups, digests):
        if digest in first:
            parent[find(group)] = find(first[digest])
        else:
            first[digest] = group
    return np.array([find(g) for g in groups])


def load_cells(paths: list[Path], labels: list[int], groups: list[str], info: ModelInfo,
               signers: frozenset[str] = frozenset(), grouped_by_specimen: bool = True) -> SiteArrays:
    images, kept_labels, kept_groups, digests, problems = [], [], [], [], []
    for path, label, group in zip(paths, labels, groups):
        try:
            data = read_bytes(path)
            images.append(decode_prepared(data, info.input))
        except (UnreadableImage, OSError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        kept_labels.append(label)
        kept_groups.append(group)
        digests.append(hashlib.sha256(data).hexdigest())
    if not images:
        raise ValueError("none of the verified cells' images could be read" + (f" ({problems[0]})" if problems else ""))
    if not grouped_by_specimen:  # every image its own group, copies merged
        kept_groups = digests[:]
    return SiteArrays(np.stack(images), np.array(kept_labels), merge_identical(kept_groups, digests), signers,
                      grouped_by_specimen, tuple(problems))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def from_folder(folder: Path, info: ModelInfo) -> SiteArrays:
    """`DIR/<specimen>/<class key>/<image>` (grouped by specimen) or `DIR/<class key>/<image>`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    keys = info.class_keys
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, labels, groups = [], [], []
    if subdirs and all(d.name in keys for d in subdirs):
        for d in subdirs:
            for p in _images(d):
                paths.append(p)
                labels.append(keys.index(d.name))
                groups.append(p.name)
        return load_cells(paths, labels, groups, info, grouped_by_specimen=False)
    for specimen in subdirs:
        classes = sorted(d for d in specimen.iterdir() if d.is_dir() and not d.name.startswith("."))
        unknown = [d.name for d in classes if d.name not in keys]
        if unknown:
            raise ValueError(f"{specimen}: folders {', '.join(unknown)} are not classes of {info.key} "
                             f"({', '.join(keys)}); expected DIR/<specimen>/<class key>/<image>")
        for d in classes:
            for p in _images(d):
                paths.append(p)
                labels.append(keys.index(d.name))
                groups.append(specimen.name)
    if not paths:
        raise ValueError(f"{folder} holds no images in <class key>/ or <specimen>/<class key>/ folders")
    return load_cells(paths, labels, groups, info)
