"""A folder of good and bad files: every good image is classified, every bad one reported,
cancel keeps what was done, and the source folder is never written to."""

from __future__ import annotations

import hashlib
import os
import stat
import threading

import cv2
import numpy as np
from conftest import random_rgb, write_image

from desktop.core.inference.model import Model
from desktop.core.inference.pipeline import classify
from desktop.core.inference.scan import scan_folder
from desktop.core.records.session import Session


def _folder_digest(folder) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def make_mixed_folder(root):
    folder = root / "mixed"
    (folder / "sub").mkdir(parents=True)
    good = {}
    for i in range(6):
        good[f"good_{i}.jpg"] = write_image(folder / f"good_{i}.jpg", random_rgb(i, (60, 60)))
    (folder / "zero.jpg").write_bytes(b"")
    full = write_image(folder / "whole.jpg", random_rgb(9, (120, 120))).read_bytes()
    (folder / "truncated.jpg").write_bytes(full[:500])
    (folder / "whole.jpg").unlink()
    (folder / "text.jpg").write_text("hello")
    rgba = np.dstack([random_rgb(10, (30, 30)), np.full((30, 30), 128, np.uint8)])
    ok, data = cv2.imencode(".png", rgba)
    (folder / "rgba.png").write_bytes(data.tobytes())
    ok, data = cv2.imencode(".tif", (np.arange(900, dtype=np.uint16).reshape(30, 30) * 70))
    (folder / "sub" / "deep16.tif").write_bytes(data.tobytes())
    ok, data = cv2.imencode(".png", np.full((20, 20), 90, np.uint8))
    (folder / "grey.png").write_bytes(data.tobytes())
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (20000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    (folder / "huge.png").write_bytes(header + b"\x00" * 32)
    write_image(folder / "Zelle_µ_细胞.png", random_rgb(11))
    (folder / "readme.txt").write_text("not an image: listed with its reason, never skipped silently")
    (folder / ".hidden.png").write_bytes(b"hidden files are the one thing left out")
    ok, data = cv2.imencode(".png", random_rgb(12))
    (folder / "no_extension").write_bytes(data.tobytes())  # an image by content
    return folder


def test_mixed_folder_every_good_image_classified_every_bad_one_reported(tmp_path, tiny_model):
    folder = make_mixed_folder(tmp_path)
    before = _folder_digest(folder)
    session = Session.open(folder, Model(tiny_model), tmp_path / "data")
    todo = session.changes().new
    assert "readme.txt" in todo and ".hidden.png" not in todo
    assert "no_extension" in todo
    session.classify(batch_size=4)
    cells = {c.file: c for c in session.cells()}
    good = ["good_0.jpg", "good_5.jpg", "rgba.png", "sub/deep16.tif", "grey.png", "Zelle_µ_细胞.png", "no_extension"]
    for name in good:
        assert cells[name].ai_class is not None and not cells[name].unreadable, name
    reasons = {name: cells[name].unreadable for name in ("zero.jpg", "truncated.jpg", "text.jpg", "huge.png", "readme.txt")}
    assert "empty" in reasons["zero.jpg"]
    assert "truncated" in reasons["truncated.jpg"] or "damaged" in reasons["truncated.jpg"]
    assert "not an image" in reasons["text.jpg"] and "not an image" in reasons["readme.txt"]
    assert "too large" in reasons["huge.png"]
    assert _folder_digest(folder) == before  # the source folder is never written to


def test_read_only_source_folder_is_fine(tmp_path, tiny_model, good_folder):
    os.chmod(good_folder, stat.S_IREAD | stat.S_IEXEC)
    try:
        session = Session.open(good_folder, Model(tiny_model), tmp_path / "data")
        session.classify()
        assert len(session.cells()) == 12
    finally:
        os.chmod(good_folder, stat.S_IRWXU)


def test_cancel_stops_early_and_keeps_what_was_done(tmp_path, tiny_model):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(200):
        write_image(folder / f"c{i:03d}.png", random_rgb(i, (24, 24)))
    session = Session.open(folder, Model(tiny_model), tmp_path / "data")
    cancel = threading.Event()
    seen = []

    def on_progress(p):
        seen.append(p.done)
        if p.done >= 20:
            cancel.set()

    result = session.classify(on_progress, cancel, batch_size=8)
    assert result.cancelled and 20 <= result.classified < 200
    stored = len(session.cells())
    assert stored == result.classified
    session.close()
    # reopening continues where it stopped instead of starting again
    again = Session.open(folder, Model(tiny_model), tmp_path / "data")
    assert len(again.changes().new) == 200 - stored


def test_reopen_restores_instead_of_reclassifying_and_notices_changes(tmp_path, tiny_model, good_folder):
    first = Session.open(good_folder, Model(tiny_model), tmp_path / "data")
    first.classify()
    first.close()
    second = Session.open(good_folder, Model(tiny_model), tmp_path / "data")
    assert not second.changes().any
    assert second.classify().classified == 0
    second.close()
    write_image(good_folder / "cell_03.png", random_rgb(99))
    os.utime(good_folder / "cell_03.png", (1, 1))
    (good_folder / "cell_04.png").unlink()
    third = Session.open(good_folder, Model(tiny_model), tmp_path / "data")
    changes = third.changes()
    assert changes.changed == ("cell_03.png",) and changes.missing == ("cell_04.png",)


def test_progress_reports_rate_and_total(tmp_path, tiny_model, good_folder):
    progress = []
    classify(Model(tiny_model), scan_folder(good_folder), lambda calls: None, progress.append, batch_size=5)
    assert progress[-1].done == progress[-1].total == 12
    assert progress[-1].images_per_s > 0


class _Watched:
    """A real model whose predict calls are recorded (what the pipeline sees is the model itself)."""

    def __init__(self, model: Model) -> None:
        self.model, self.info = model, model.info
        self.started = []  # batch numbers, in the order predict began
        self.second_started = threading.Event()

    def feed(self, pixels):
        return self.model.feed(pixels)

    def predict_feed(self, feed, threads=None):
        self.started.append(len(self.started))
        if len(self.started) == 2:
            self.second_started.set()
        return self.model.predict_feed(feed, threads)


def test_the_next_batch_is_inferred_while_the_caller_stores_the_last(tmp_path, tiny_model, good_folder):
    """Storing a batch (the caller's thread) never holds up the model: predict of batch 2 begins
    while the caller is still inside on_calls for batch 1 (on the old serial loop it waited)."""
    model = _Watched(Model(tiny_model))
    overlapped = []

    def on_calls(calls):
        if not overlapped:
            overlapped.append(model.second_started.wait(timeout=20))

    done = classify(model, scan_folder(good_folder), on_calls, batch_size=4, workers=1)
    assert done == 12 and overlapped == [True]


def test_an_error_while_storing_reaches_the_caller_and_leaves_no_thread_behind(tiny_model, good_folder):
    before = set(threading.enumerate())

    def on_calls(calls):
        raise OSError("disk full")

    try:
        classify(Model(tiny_model), scan_folder(good_folder), on_calls, batch_size=2, workers=2)
    except OSError as exc:
        assert "disk full" in str(exc)
    else:
        raise AssertionError("the error was swallowed")
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not left, left


def test_a_failure_in_the_decoding_threads_reaches_the_caller(tiny_model, good_folder, monkeypatch):
    from desktop.core.inference import pipeline

    real = pipeline.decode_batch
    calls = []

    def failing(items, model, tissue):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("no memory for a batch")
        return real(items, model, tissue)

    monkeypatch.setattr(pipeline, "decode_batch", failing)
    stored = []
    try:
        classify(Model(tiny_model), scan_folder(good_folder), stored.extend, batch_size=3, workers=1)
    except MemoryError:
        pass
    else:
        raise AssertionError("the decoder's failure was swallowed")
    assert len(stored) == 3  # the batch before the failure was stored


def _choose(threads: int, per_image: dict[int, float], measure: bool = True):
    from desktop.core.inference.threads import ThreadChoice

    choice = ThreadChoice(threads, measure, queued=1)  # stretches of 4 batches, the last 2 timed
    used = []
    for _ in range(40):
        n = choice.next()
        used.append(n)
        choice.record(n, per_image[n])
    return choice.chosen, used


def test_the_model_keeps_its_threads_only_where_they_make_the_run_faster():
    chosen, used = _choose(2, {2: 1.0, 1: 0.8})  # one thread left the decoders more: batches came faster
    assert chosen == 1 and used[:16] == [2] * 4 + [1] * 4 + [2] * 4 + [1] * 4 and set(used[16:]) == {1}
    chosen, used = _choose(2, {2: 0.6, 1: 1.0})
    assert chosen == 2 and set(used[16:]) == {2}


def test_a_fixed_or_single_thread_model_is_not_measured():
    assert _choose(1, {1: 1.0}) == (1, [1] * 40)
    assert _choose(4, {4: 1.0, 1: 0.1}, measure=False) == (4, [4] * 40)
