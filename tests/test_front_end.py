"""The blood model's white-balance front end, served split (the background measured beside
decoding): the same numbers as the model file, bit for bit; other models are served whole."""

from __future__ import annotations

import numpy as np
from conftest import SAMPLES, served_background, shipped

from desktop.core.inference.front_end import FED, split
from desktop.core.inference.imaging import load_prepared
from desktop.core.inference.model import Model


def test_the_split_front_end_gives_exactly_the_model_files_numbers():
    model = Model(shipped("blood-pbc8.onnx"))
    assert served_background(model) is not None, "the shipped blood model should be served split"
    real = [load_prepared(p, model.info.input) for p in sorted((SAMPLES / "blood").rglob("*.jpg"))]
    rng = np.random.default_rng(7)
    shape = (8, model.info.input.height, model.info.input.width, 3)
    synthetic = [rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(200, 256, shape, dtype=np.uint8),
                 rng.integers(0, 3, shape, dtype=np.uint8)]
    images = np.concatenate([np.stack(real), *synthetic])
    assert len(real) >= 16
    feed = model.feed(images)
    assert set(feed) == {"image", FED}
    probabilities, ood = model.predict_feed(feed)
    whole = model.session.run(["probabilities", "ood_score"], {"image": images})
    assert np.array_equal(probabilities, whole[0]) and np.array_equal(ood, whole[1])


def test_the_split_starts_by_itself_once_it_pays_for_itself(monkeypatch):
    from desktop.core.inference import model as model_module

    monkeypatch.setattr(model_module, "FRONT_END_AFTER", 8)
    model = Model(shipped("blood-pbc8.onnx"))
    images = np.zeros((4, model.info.input.height, model.info.input.width, 3), np.uint8)
    model.predict(images)
    assert not model._split_started
    model.predict(images)
    assert model._split_started


def test_a_model_without_the_front_end_is_served_whole(tiny_model):
    model = Model(tiny_model)
    assert split(tiny_model.read_bytes()) is None
    assert served_background(model, timeout=3) is None
    assert set(model.feed(np.zeros((2, 16, 16, 3), np.uint8))) == {"image"}


def test_a_graph_whose_front_end_is_laid_out_otherwise_is_served_whole(tmp_path):
    import onnx
    from onnx import helper

    proto = onnx.load(str(shipped("blood-pbc8.onnx")))
    # something else now reads a step of the background's measurement: it cannot be split off
    proto.graph.node.append(helper.make_node("Identity", ["wb_pooled"], ["pooled_copy"]))
    assert split(proto.SerializeToString()) is None
