"""The user models folder holds only what SlideTally installed: `installed.json` beside the models lists
each site model written by Tools → Adapt, `slidetally-cli adapt` or `slidetally-train adapt` (file,
SHA-256, key, approver, time). A file the registry does not list, or whose bytes changed since, is
skipped with a reason; and no model outside the shipped folder may take a shipped model's key, nor
its display name and version (a second "blood-pbc8 v3.0.0" in the list)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from desktop.core.atomic import write_atomically

REGISTRY = "installed.json"
log = logging.getLogger(__name__)


def installed(folder: Path) -> dict[str, dict]:
    """File name -> its registry entry ({} when the folder has no registry or it cannot be read)."""
    path = Path(folder) / REGISTRY
    try:
        entries = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return {}
    if not isinstance(entries, list):
        return {}
    return {e["file"]: e for e in entries if isinstance(e, dict) and isinstance(e.get("file"), str)}


def register(model: Path, sha256: str, key: str, approved_by: str, at: str) -> None:
    """Add an installed model to its folder's registry (rewritten atomically) and to the log."""
    folder = Path(model).parent
    entries = list(installed(folder).values())
    entries = [e for e in entries if e["file"] != model.name]
    entries.append({"file": model.name, "sha256": sha256, "key": key, "approved_by": approved_by, "at": at})
    write_atomically(folder / REGISTRY, json.dumps(entries, indent=1) + "\n", encoding="utf-8")
    log.info("model installed: %s (SHA-256 %s, key %s, approved by %s, %s)", model, sha256, key, approved_by, at)


def why_not_installed(path: Path, sha256: str, registry: dict[str, dict]) -> str:
    """Why a file in the user models folder is skipped ('' when SlideTally installed it, unchanged)."""
    entry = registry.get(path.name)
    if entry is None:
        return f"{path.name}: skipped: SlideTally did not install it (not in {REGISTRY})"
    if entry.get("sha256") != sha256:
        return f"{path.name}: skipped: its bytes changed since SlideTally installed it"
    return ""


def why_impostor(info, shipped: list) -> str:
    """Why a model outside the shipped folder may not be listed: it takes a shipped key, or a shipped
    display name and version ('' when it takes neither)."""
    for s in shipped:
        if info.key == s.key:
            return f"{info.path.name}: skipped: it takes the key of the shipped model {s.key}"
        if (info.display_name, info.version) == (s.display_name, s.version):
            return f"{info.path.name}: skipped: it takes the name and version of the shipped {s.display_name} v{s.version}"
    return ""
