"""A whole slide's scale in a session: the µm per pixel a technician gave for slides that do not record
it, and how each slide was read, kept in the session's record (and so in every report) and audited."""

from __future__ import annotations

from pathlib import Path

from desktop.core.errors import ActionRefused, FolderError
from desktop.core.inference.model_info import MPP_RANGE, ModelInfo
from desktop.core.inference.wsi import SlideError, open_slide, plausible_mpp, scale_notes
from desktop.core.names import readable
from desktop.core.records.domain import Actor
from desktop.core.records.store import SessionStore


def declared_mpp(store: SessionStore) -> float | None:
    value = store.meta("declared_mpp")
    return float(value) if value else None


def declare_mpp(store: SessionStore, actor: Actor, mpp: float | None) -> None:
    """Keep the µm per pixel given for slides that do not record theirs (audited; None: nothing given)."""
    if mpp is None or mpp == declared_mpp(store):
        return
    if not plausible_mpp(mpp):
        raise ActionRefused(f"A slide's pixel size of {mpp} µm is not plausible ({MPP_RANGE[0]:g}-{MPP_RANGE[1]:g} "
                            "µm per pixel).")
    with store.write(actor) as w:
        w.set_meta("declared_mpp", repr(float(mpp)))
        w.audit("slide scale", None, None, f"{mpp:g} µm/px", "given for slides that do not record their pixel size")


def check_slide(path: Path, info: ModelInfo, declared: float | None) -> None:
    """Refuse, in one sentence, a slide this model cannot read at its scale (no scale known, too coarse, damaged)."""
    if info.mpp is None:
        raise FolderError(f"{readable(path.name)} is a whole-slide image; {info.display_name} is not a patch model "
                          "that states its scale (µm per pixel). Choose a tissue assay.")
    try:
        open_slide(path, info.mpp, declared)
    except SlideError as exc:
        raise FolderError(f"{readable(path.name)}: {exc}.") from exc


def note_slide_scales(store: SessionStore, actor: Actor, items: list) -> None:
    """Keep, in the session's record, how each slide among `items` was read (audited when it changes)."""
    text = scale_notes(items)
    if text and text != (store.meta("slide_scale") or ""):
        with store.write(actor) as w:
            w.set_meta("slide_scale", text)
            w.audit("slide scale", None, None, text)
