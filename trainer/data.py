"""From a folder of labelled images to deduplicated, reproducible train/val/test splits.

Blood: `<root>/<class>/*.jpg`, split stratified by class.
IDC: `<root>/<patient>/<0|1>/*.png`, split by patient (patches of one patient are
near-duplicates, so a patch-level split would leak).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.model_selection import train_test_split

from desktop.core.inference.imaging import IMAGE_EXTENSIONS, InputSpec, UnreadableImage, load_prepared
from desktop.core.inference.slide import PATCH_XY

SEED = 20261124
SPLITS = ("train", "val", "test")
IDC_COMPLETE_PATIENTS = ("8913", "8914", "8917", "8918", "8950", "9022", "9023", "9041", "9077", "9078")
SUBTYPE = re.compile(r"^([A-Za-z]+)_")


def subtype_of(path: Path) -> str:
    """The PBC sub-type a file name starts with (SNE, BNE, MY, MMY, PMY, ...), or ''."""
    match = SUBTYPE.match(path.name)
    return match.group(1).upper() if match else ""


@dataclass
class Item:
    path: Path
    label: int
    group: str = ""  # patient id for IDC; empty for blood
    subtype: str = ""  # PBC sub-type from the file name (blood); empty for IDC


class DecodedSplit(NamedTuple):
    """One split decoded: pixels, labels and the items they came from, row for row
    (an unreadable file is dropped from all three, so they never fall out of step)."""

    x: np.ndarray
    y: np.ndarray
    items: list[Item]


@dataclass
class Dataset:
    classes: list[str]
    items: dict[str, list[Item]]  # split name -> items
    report: dict = field(default_factory=dict)

    def split_hash(self) -> str:
        """SHA-256 over the sorted relative file lists of all splits."""
        digest = hashlib.sha256()
        for split in SPLITS:
            digest.update(split.encode())
            for item in sorted(self.items[split], key=lambda i: str(i.path)):
                digest.update(f"{item.path.parent.name}/{item.path.name}:{item.label}\n".encode())
        return digest.hexdigest()[:16]

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            split: {c: sum(1 for i in self.items[split] if i.label == k) for k, c in enumerate(self.classes)}
            for split in SPLITS
        }

    def facts(self) -> dict[str, int]:
        """What the card says about the data: images and (IDC) patients, counted, never typed in."""
        items = [i for split in SPLITS for i in self.items[split]]
        return {"images": len(items), "patients": len({i.group for i in items if i.group})}

    def save_lists(self, out_dir: Path) -> None:
        """Write the split (hash, counts, file lists) so a run can be audited and repeated."""
        record = {
            "split_hash": self.split_hash(),
            "classes": self.classes,
            "counts": self.counts(),
            "report": self.report,
            "files": {
                s: [f"{i.path.parent.parent.name}/{i.path.parent.name}/{i.path.name}" for i in self.items[s]]
                for s in SPLITS
            },
        }
        (out_dir / "split.json").write_text(json.dumps(record, indent=1))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _file_hash(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def deduplicate(items: list[Item]) -> tuple[list[Item], dict]:
    """Keep one file per content hash; drop every copy whose copies disagree on the label."""
    by_hash: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_hash[_file_hash(item.path)].append(item)
    kept, duplicates, conflicts = [], [], []
    for copies in by_hash.values():
        copies.sort(key=lambda i: str(i.path))
        if len({c.label for c in copies}) > 1:
            conflicts.append([str(c.path) for c in copies])
            continue
        kept.append(copies[0])
        duplicates.extend(str(c.path) for c in copies[1:])
    kept.sort(key=lambda i: str(i.path))
    return kept, {"duplicates_dropped": duplicates, "label_conflicts_dropped": conflicts}


def discover_blood(root: Path) -> tuple[list[str], list[Item]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise SystemExit(f"No class folders found in {root}")
    items = [Item(path, k, subtype=subtype_of(path)) for k, c in enumerate(classes) for path in _image_files(root / c)]
    return classes, items


def discover_idc(root: Path) -> list[Item]:
    items = []
    for patient in sorted(p for p in root.iterdir() if p.is_dir()):
        for label in (0, 1):
            items += [Item(path, label, patient.name) for path in _image_files(patient / str(label))]
    if not items:
        raise SystemExit(f"No <patient>/<0|1>/ patches found in {root}")
    return items


def split_blood(root: Path, limit_per_class: int | None = None) -> Dataset:
    """Stratified 64/16/20 split after deduplication, with a fixed seed."""
    classes, items = discover_blood(root)
    if limit_per_class:
        items = [i for k in range(len(classes)) for i in [x for x in items if x.label == k][:limit_per_class]]
    items, report = deduplicate(items)
    labels = [i.label for i in items]
    rest, test = train_test_split(items, test_size=0.20, stratify=labels, random_state=SEED)
    train, val = train_test_split(rest, test_size=0.20, stratify=[i.label for i in rest], random_state=SEED)
    return Dataset(classes, {"train": train, "val": val, "test": test}, report)


def split_idc(root: Path, patients: list[str] | None = None) -> Dataset:
    """Patient-level split: complete slides are dealt out first (3 to test, 1 to val)."""
    items = discover_idc(root)
    if patients:
        items = [i for i in items if i.group in set(patients)]
    items, report = deduplicate(items)
    by_patient: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_patient[item.group].append(item)
    rng = np.random.default_rng(SEED)
    complete = [p for p in IDC_COMPLETE_PATIENTS if p in by_patient]
    rng.shuffle(complete)
    assigned: dict[str, str] = {}
    if len(complete) >= 6:
        for p in complete[:3]:
            assigned[p] = "test"
        assigned[complete[3]] = "val"
        for p in complete[4:]:
            assigned[p] = "train"
    sampled = sorted(p for p in by_patient if p not in assigned)
    # Stratify the sampled patients by whether they show IDC, so every split has IDC.
    has_idc = [int(any(i.label for i in by_patient[p])) for p in sampled]
    strat = has_idc if min(np.bincount(has_idc, minlength=2)) >= 3 else None
    rest, test = train_test_split(sampled, test_size=0.20, stratify=strat, random_state=SEED)
    strat_rest = [int(any(i.label for i in by_patient[p])) for p in rest] if strat else None
    train, val = train_test_split(rest, test_size=0.20, stratify=strat_rest, random_state=SEED)
    for split, plist in (("train", train), ("val", val), ("test", test)):
        for p in plist:
            assigned[p] = split
    split_items: dict[str, list[Item]] = {s: [] for s in SPLITS}
    for p, split in sorted(assigned.items()):
        split_items[split].extend(by_patient[p])
    report["patients"] = {s: sorted(p for p, v in assigned.items() if v == s) for s in SPLITS}
    return Dataset(["normal", "idc"], split_items, report)


def patch_xy(path: Path) -> tuple[int, int] | None:
    match = PATCH_XY.search(path.name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def load_arrays(items: list[Item], spec: InputSpec) -> tuple[DecodedSplit, list[str]]:
    """Decode every item once through the app's own `prepare`; unreadable files are skipped."""
    images = np.empty((len(items), spec.height, spec.width, 3), dtype=np.uint8)
    kept: list[Item] = []
    skipped: list[str] = []
    for item in items:
        try:
            images[len(kept)] = load_prepared(item.path, spec)
        except UnreadableImage as exc:
            skipped.append(f"{item.path}: {exc}")
            continue
        kept.append(item)
    labels = np.array([item.label for item in kept], dtype=np.int32)
    return DecodedSplit(images[:len(kept)], labels, kept), skipped


def cached_arrays(dataset: Dataset, spec: InputSpec, cache_dir: Path) -> dict[str, DecodedSplit]:
    """Decoded splits, cached on disk under the split hash so a resumed run skips decoding."""
    cache = cache_dir / f"cache-{dataset.split_hash()}-{spec.height}x{spec.width}.npz"
    if cache.exists():
        data = np.load(cache)
        return {s: DecodedSplit(data[f"{s}_x"], data[f"{s}_y"], [dataset.items[s][i] for i in data[f"{s}_kept"]])
                for s in SPLITS}
    arrays, skipped = {}, []
    for split in SPLITS:
        decoded, bad = load_arrays(dataset.items[split], spec)
        arrays[split] = decoded
        skipped += bad
        print(f"  decoded {split}: {len(decoded.x)} images", flush=True)
    dataset.report["unreadable_skipped"] = skipped
    for line in skipped:
        print(f"  skipped unreadable {line}", flush=True)
    position = {s: {id(item): n for n, item in enumerate(dataset.items[s])} for s in SPLITS}
    np.savez(cache, **{f"{s}_x": arrays[s].x for s in SPLITS}, **{f"{s}_y": arrays[s].y for s in SPLITS},
             **{f"{s}_kept": np.array([position[s][id(i)] for i in arrays[s].items], dtype=np.int64) for s in SPLITS})
    return arrays
