"""Model files: the contract is checked, and bad files give a sentence, not a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import DATA, MODELS, ROOT, make_tiny_model, shipped

from desktop.core.errors import ModelError
from desktop.core.inference.model import Model, discover_models


def test_damaged_model_file_names_the_file(tmp_path, tiny_model):
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(tiny_model.read_bytes()[:200])
    with pytest.raises(ModelError, match="damaged.onnx"):
        Model(damaged)


def test_foreign_onnx_without_metadata_is_refused(tmp_path):
    path = make_tiny_model(tmp_path / "foreign.onnx", metadata_overrides={})
    import onnx

    model = onnx.load(path)
    del model.metadata_props[:]
    onnx.save(model, path)
    with pytest.raises(ModelError, match="not a SlideTally model"):
        Model(path)


def test_class_count_mismatch_is_refused(tmp_path):
    path = make_tiny_model(tmp_path / "m.onnx", metadata_overrides={"classes": json.dumps([{"key": "x"}, {"key": "y"}])})
    with pytest.raises(ModelError, match="classes"):
        Model(path)


def test_discovery_lists_good_models_and_explains_bad_ones(tmp_path):
    make_tiny_model(tmp_path / "good.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    infos, problems = discover_models(tmp_path)
    assert [i.key for i in infos] == ["good"]
    assert len(problems) == 1 and "junk.onnx" in problems[0]


@pytest.mark.parametrize("name,task,n", [("blood-pbc8.onnx", "blood-differential", 8), ("breast-idc.onnx", "idc-patch", 2)])
def test_shipped_model_metadata_is_complete(name, task, n):
    model = Model(shipped(name))
    info = model.info
    assert info.task == task and len(info.classes) == n
    assert all(c.hotkey for c in info.classes)
    assert model.has_ood and info.ood_threshold > 0
    for key in ("accuracy", "macro_f1", "n", "per_class_recall", "ece"):
        assert key in info.metrics
    assert info.dataset["split_hash"] and info.provenance["trainer_git_sha"]
    assert 0 < info.temperature < 10 and 0 <= info.review_threshold < 1
    probs, ood = model.predict(np.zeros((2, info.input.height, info.input.width, 3), np.uint8))
    assert probs.shape == (2, n) and np.allclose(probs.sum(1), 1, atol=1e-5) and ood.shape == (2,)


def test_blood_model_classes_match_the_data_folders():
    info = Model(shipped("blood-pbc8.onnx")).info
    if not (DATA / "pbc").is_dir():
        pytest.skip("shared data not present")
    folders = sorted(p.name for p in (DATA / "pbc").iterdir() if p.is_dir())
    assert info.class_keys == folders
    groups = {c.key: c.group for c in info.classes}
    assert groups["erythroblast"] == "nrbc" and groups["platelet"] == "platelet" and groups["neutrophil"] == "wbc"


def test_cli_models_lists_shipped_models():
    shipped("blood-pbc8.onnx")
    out = subprocess.run([sys.executable, "-m", "desktop.cli", "models", "--folder", str(MODELS)], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "blood-pbc8" in out.stdout and "test accuracy" in out.stdout
