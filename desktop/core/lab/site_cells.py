"""A lab's verified cells, gathered for verification and adaptation: from its signed-off
sessions in the data folder, or from a labelled folder tree `DIR/<specimen>/<class key>/<image>`
(or `DIR/<class key>/<image>`, where no specimen is known).

Groups, which cross-validation never splits: the session's specimen, or the folder's specimen, or
(no specimen known) the image itself; images with the same bytes (copies, hard links) are always
merged into one group, whatever their specimen."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from desktop.core.errors import ActionRefused
from desktop.core.inference.imaging import UnreadableImage, load_prepared
from desktop.core.inference.items import parse_tile_name
from desktop.core.inference.model import Model
from desktop.core.inference.model_info import ModelInfo
from desktop.core.inference.scan import scan_folder
from desktop.core.lab.adaptation import SiteSet
from desktop.core.records.domain import Cell, SessionState
from desktop.core.records.store import check_session_file, read_session, session_files


@dataclass(frozen=True)
class SignedSession:
    path: Path
    meta: dict[str, str]
    cells: list[Cell]

    @property
    def name(self) -> str:
        return self.meta.get("specimen_id") or Path(self.meta.get("folder", str(self.path))).name

    @property
    def folder(self) -> Path:
        return Path(self.meta.get("folder", ""))

    def verified(self) -> list[Cell]:
        """Cells with a final call: present, readable, not waiting for review."""
        return [c for c in self.cells if c.counted and c.ai_class is not None]


@dataclass(frozen=True)
class VerifiedCell:
    path: Path
    label: int
    group: str


def _parse_since(since: str | None) -> dt.datetime | None:
    if not since:
        return None
    try:
        when = dt.datetime.fromisoformat(since)
    except ValueError as exc:
        raise ActionRefused(f"The start date must be a date like 2026-11-01, not {since!r}.") from exc
    when = when if when.tzinfo else when.astimezone()
    if when > dt.datetime.now(when.tzinfo):
        raise ActionRefused(f"The start date {since} is in the future: no session can have been signed off since.")
    return when


class FoundSessions(list):
    """The signed sessions found (a list), and the names of those left out because their record was
    altered outside SlideTally: they feed no verification and no adaptation."""

    def __init__(self, sessions=(), altered: list[str] | None = None) -> None:
        super().__init__(sessions)
        self.altered = altered or []

    def altered_note(self) -> str:
        """'2 session(s) left out: altered outside SlideTally (a.sqlite, b.sqlite)', or ''."""
        if not self.altered:
            return ""
        return f"{len(self.altered)} session(s) left out: altered outside SlideTally ({', '.join(self.altered)})"


def signed_sessions(root: Path, info: ModelInfo, since: str | None = None) -> FoundSessions:
    """Signed-off sessions made with this very model file (bound by its SHA-256), archived ones included,
    newest last; a session whose record was altered outside SlideTally is left out and named."""
    after = _parse_since(since)
    found, altered = [], []
    for path in session_files(root, archived=True):
        try:
            meta, cells = read_session(path)
            problems = check_session_file(path) if meta.get("model_sha256") == info.sha256 else []
        except Exception:  # noqa: BLE001 - a damaged or foreign file is not a session to report on
            continue
        if problems:
            altered.append(path.name)
            continue
        if meta.get("model_sha256") != info.sha256 or meta.get("state") != SessionState.SIGNED:
            continue
        signed_at = meta.get("signed_at", "")
        if after is not None and (not signed_at or dt.datetime.fromisoformat(signed_at) < after):
            continue
        found.append(SignedSession(path, meta, cells))
    return FoundSessions(sorted(found, key=lambda s: s.meta.get("signed_at", "")), altered)


def unsigned_session_files(root: Path, info: ModelInfo) -> list[Path]:
    """The image files of this model's sessions not signed off (classified, never verified: the lab's
    unlabelled cells), readable and present; altered sessions and tiles of tissue images are left out."""
    files = []
    for path in session_files(root):
        try:
            meta, cells = read_session(path)
            if meta.get("model_sha256") != info.sha256 or meta.get("state") == SessionState.SIGNED \
                    or check_session_file(path):
                continue
        except Exception:  # noqa: BLE001 - a damaged or foreign file is not a source of cells
            continue
        folder = Path(meta.get("folder", ""))
        files += [folder / c.file for c in cells if not c.unreadable and not c.missing and parse_tile_name(c.file) is None]
    return files


def cells_from_sessions(sessions: list[SignedSession], info: ModelInfo) -> list[VerifiedCell]:
    keys = info.class_keys
    out = []
    for s in sessions:
        for c in s.verified():
            final = c.call
            if final in keys and parse_tile_name(c.file) is None:  # tiles are not files of their own
                out.append(VerifiedCell(s.folder / c.file, keys.index(final), s.name))  # one specimen, one group
    groups = merge_identical([c.group for c in out], [_digest(c.path) for c in out])
    return [VerifiedCell(c.path, c.label, g) for c, g in zip(out, groups)]


def merge_identical(groups: list[str], digests: list[str]) -> list[str]:
    """Union of the groups that share an image's bytes: one group name per connected set."""
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
    return [find(g) for g in groups]


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return f"unreadable:{path}"  # reported when the image is read; its own group meanwhile


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def has_specimens(folder: Path, info: ModelInfo) -> bool:
    """True for DIR/<specimen>/<class key>/…, False for DIR/<class key>/… (no specimen known)."""
    subdirs = _visible_dirs(Path(folder))
    return bool(subdirs) and not all(d.name in info.class_keys for d in subdirs)


def cells_from_folder(folder: Path, info: ModelInfo) -> list[VerifiedCell]:
    """A labelled tree (see the module docstring), grouped by specimen, or by image without one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ActionRefused(f"{folder} is not a folder")
    keys = info.class_keys
    by_specimen = has_specimens(folder, info)
    specimens = _visible_dirs(folder) if by_specimen else [folder]
    out = []
    for specimen in specimens:
        unknown = [d.name for d in _visible_dirs(specimen) if d.name not in keys]
        if unknown:
            raise ActionRefused(f"{specimen}: folders {', '.join(unknown)} are not classes of {info.key} "
                                f"({', '.join(keys)}); expected DIR/<specimen>/<class key>/<image> or DIR/<class key>/<image>")
        for k, key in enumerate(keys):
            if (specimen / key).is_dir():
                out += [VerifiedCell(f.path, k, specimen.name if by_specimen else f"{specimen.name}/{key}/{f.relative}")
                        for f in scan_folder(specimen / key)]
    if not out:
        raise ActionRefused(f"{folder} holds no images in <class key>/ or <specimen>/<class key>/ folders")
    groups = merge_identical([c.group for c in out], [_digest(c.path) for c in out])
    return [VerifiedCell(c.path, c.label, g) for c, g in zip(out, groups)]


def extract(model: Model, cells: list[VerifiedCell], progress=None, cancel: threading.Event | None = None,
            batch: int = 64) -> tuple[SiteSet, list[str]]:
    """Run the base model over the cells once: features, probabilities, Unfamiliar scores.
    Returns the set and one line per cell that could not be used."""
    spec = model.info.input
    problems: list[str] = []

    def load(cell: VerifiedCell):
        try:
            return load_prepared(cell.path, spec)
        except (UnreadableImage, OSError) as exc:
            problems.append(f"{cell.path}: {exc}")
            return None

    feats, probs, oods, kept = [], [], [], []
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(cells), batch):
            if cancel is not None and cancel.is_set():
                raise InterruptedError("cancelled")
            chunk = cells[start:start + batch]
            images = list(pool.map(load, chunk))
            good = [(c, im) for c, im in zip(chunk, images) if im is not None]
            if good:
                p, o, f = model.predict_with_features(np.stack([im for _, im in good]))
                feats.append(f)
                probs.append(p)
                oods.append(o)
                kept += [c for c, _ in good]
            if progress:
                progress(min(start + batch, len(cells)), len(cells))
    if not kept:
        raise ActionRefused("none of the verified cells' images could be read" + (f" ({problems[0]})" if problems else ""))
    has_ood = oods[0] is not None
    site = SiteSet(np.concatenate(feats).astype(np.float64), np.array([c.label for c in kept]),
                   np.array([c.group for c in kept]), np.concatenate(probs).astype(np.float64),
                   np.concatenate(oods).astype(np.float64) if has_ood else None)
    return site, problems


def who_signed(sessions: list[SignedSession]) -> dict[str, list[str]]:
    """The names and computer logins that signed or verified these sessions: none of them may approve
    a site model fitted on their cells (logins are known for sessions signed since version 0.1.1)."""
    def values(*keys: str) -> list[str]:
        return sorted({v for s in sessions for k in keys if (v := s.meta.get(k, ""))})

    return {"signed_by": values("signed_by", "verified_by"), "signed_logins": values("signed_login", "verified_login")}
