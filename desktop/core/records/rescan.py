"""A rescan: the folder against the store, by content. Pure: it says what changed and what needs
the model; the session decides what to take in (nothing, once signed off)."""

from __future__ import annotations

import threading

from desktop.core.inference.files import UnreadableFile
from desktop.core.inference.items import Item, Sources
from desktop.core.inference.scan import ScanCancelled
from desktop.core.records.domain import FolderChanges
from desktop.core.records.store import StoredFile


def _current(item: Item, sources: Sources) -> str | None:
    """The item's content hash now, or None when it cannot be read."""
    try:
        return item.content_hash(sources)
    except UnreadableFile:
        return None


def compare(items: list[Item], known: dict[str, StoredFile],
            cancel: threading.Event | None = None) -> tuple[FolderChanges, list[Item]]:
    """What differs between the folder's `items` and what the store `known`s, by content (every known
    file is hashed: size and time can be kept by a copy that changed the bytes); and the items that
    need the model. Writes nothing."""
    sources = Sources()  # a tissue image's or a slide's tiles share one file: it is hashed once
    new, changed, returned, touched, todo = [], [], [], [], []
    for item in items:
        if cancel is not None and cancel.is_set():
            raise ScanCancelled()
        stored = known.get(item.relative)
        if stored is None:
            new.append(item.relative)
            todo.append(item)
            continue
        # every file, every time: a same-size, same-time byte change is a change (a slide's tile is also
        # known by the scale it is read at: another µm per pixel is another tile)
        current = _current(item, sources)
        if current is None and stored.content_hash is None and not stored.missing \
                and (stored.size, stored.mtime) == (item.size, item.mtime):
            continue  # unreadable before and now (a pipe, a device, a broken link): nothing new to say
        if current is not None and current == stored.content_hash:
            if stored.missing:
                returned.append(item.relative)
            elif (stored.size, stored.mtime) != (item.size, item.mtime):
                touched.append(item.relative)
            continue
        changed.append(item.relative)
        todo.append(item)
    present = {i.relative for i in items}
    missing = [f for f, s in known.items() if f not in present and not s.missing]
    stat = {i.relative: (i.size, i.mtime) for i in items}
    empty = not items and any(not s.missing for s in known.values())
    changes = FolderChanges(tuple(new), tuple(changed), () if empty else tuple(missing), tuple(returned),
                            tuple((f, *stat[f]) for f in touched + returned), folder_empty=empty)
    return changes, todo
