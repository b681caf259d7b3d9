"""A newly trained white-balance model keeps the split front end: the trainer's export writes the
layer under the node names the app looks for (desktop/core/inference/graph_names.py), and those
names are written in that one module only."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
from conftest import ROOT, served_background, shipped

pytest.importorskip("tensorflow")

from desktop.core.inference.contract import ModelMetadata
from desktop.core.inference.front_end import FED
from desktop.core.inference.model import Model

CLASSES = ("a", "b", "c")


def _metadata(size: int) -> ModelMetadata:
    """The contract's metadata of a tiny model (as the trainer's build_metadata makes it)."""
    props = {"slidetally.schema": "slidetally/1", "task": "blood-differential", "display_name": "Tiny balanced",
              "version": "0.0.1", "classes": [{"key": k, "label": k, "group": "wbc", "hotkey": str(i + 1)}
                                             for i, k in enumerate(CLASSES)],
             "input_size": [size, size], "resize": "area", "small_input": "resize", "temperature": 1.5,
             "review_threshold": 0.0, "decision_threshold": 0.5, "ood_threshold": 10.0,
             "metrics": {"accuracy": 0.5, "macro_f1": 0.5, "n": 10}, "provenance": {"date": "test"}}
    return ModelMetadata.from_props({k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items()})


def _images(size: int) -> np.ndarray:
    """Noise, and noise on a tinted bright background, where the white balance matters."""
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (12, size, size, 3), dtype=np.uint8)
    tinted = np.clip(rng.normal((230, 200, 150), 20, (12, size, size, 3)), 0, 255).astype(np.uint8)
    return np.concatenate([noise, tinted])


def _as_if_trained(model) -> None:
    """Weights off their initial values: a zero bias or batch norm at its start would be folded away."""
    rng = np.random.default_rng(5)
    for weight in model.weights:
        shape = tuple(weight.shape)
        value = rng.uniform(0.5, 1.5, shape) if "variance" in weight.path else weight.numpy() + rng.normal(0, 0.05, shape)
        weight.assign(value.astype(np.float32))


def _export(tmp_path, monkeypatch, size: int):
    """A tiny untrained SlideNet with white balance through the trainer's export step (train.py's)."""
    import keras

    from trainer import architectures, export, train
    from trainer.calibration import Calibration
    from trainer.data import DecodedSplit
    from trainer.recipe import DEFAULTS

    monkeypatch.setattr(train, "bench_onnx", lambda *args, **kwargs: 0.0)  # speed is not the question here
    keras.utils.set_random_seed(5)
    model = architectures.slidenet((size, size, 3), len(CLASSES), (8, 8, 8), white_balance=[210.0, 190.0, 225.0])
    _as_if_trained(model)
    images = _images(size)
    labels = np.arange(len(images)) % len(CLASSES)
    features = export.feature_model(model)(images.astype(np.float32), training=False)[1].numpy()
    unfamiliar = export.Unfamiliar(export.fit_ood(features, labels, len(CLASSES)), 10.0)
    recipe = dataclasses.replace(DEFAULTS["blood"], key="tiny-balanced", input_size=size)
    exported = train.export_and_prove(recipe, model, Calibration(1.5, 0.5, 0.0, 0.5, []), unfamiliar, _metadata(size),
                                      DecodedSplit(images, labels, []), tmp_path)
    return exported, images



@pytest.mark.parametrize("size", [32, 30])  # 30: not a multiple of the 4x4 cells, the graph crops
def test_a_newly_exported_white_balance_model_is_served_split_with_the_files_numbers(tmp_path, monkeypatch, size):
    import onnx
    import tensorflow as tf

    from trainer.architectures import bright_background
    from trainer.rebuild import prove_rebuild, rebuild

    exported, images = _export(tmp_path, monkeypatch, size)
    assert exported.parity["max_abs_dprob"] <= 1e-4  # the export is proved against Keras, layer included
    model = Model(exported.path)
    assert served_background(model, timeout=60) is not None, "the exported white balance should be served split"
    feed = model.feed(images)
    assert set(feed) == {"image", FED}
    # the app measures the background beside decoding exactly as the trainer's layer does
    expected = np.maximum(bright_background(tf.cast(images, tf.float32)).numpy(), 1.0)
    assert np.array_equal(feed[FED][:, :, 0], expected)
    probabilities, ood = model.predict_feed(feed)
    whole = model.session.run(["probabilities", "ood_score"], {"image": images})
    assert np.array_equal(probabilities, whole[0]) and np.array_equal(ood, whole[1])
    # the trainer's rebuild (site adaptation) reads the same names back
    assert prove_rebuild(rebuild(onnx.load(str(exported.path))), images) <= 1e-4


def test_the_white_balance_node_names_are_written_in_one_module_only():
    from desktop.core.inference import graph_names

    literal = re.compile(r"""(?<=["'])wb_\w*""")
    writers = {path.relative_to(ROOT).as_posix(): set(literal.findall(path.read_text(encoding="utf-8")))
               for folder in ("desktop", "trainer", "scripts") for path in sorted((ROOT / folder).rglob("*.py"))}
    writers = {path: names for path, names in writers.items() if names}
    assert set(writers) == {"desktop/core/inference/graph_names.py"}
    names = [v for k, v in vars(graph_names).items() if k.isupper() and isinstance(v, str)]
    assert len(names) == len(set(names)) == len(writers["desktop/core/inference/graph_names.py"])
    # every white-balance name in the shipped blood model is one of them
    graph = json.dumps(list(_graph_names(shipped("blood-pbc8.onnx"))))
    assert set(re.findall(r"wb_\w+", graph)) <= set(names)


def _graph_names(path):
    import onnx

    graph = onnx.load(str(path)).graph
    yield from (i.name for i in graph.initializer)
    for node in graph.node:
        yield from (*node.input, *node.output)
