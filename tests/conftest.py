"""Shared fixtures: real files made by the tests, a tiny contract-honouring ONNX model,
and paths to the shipped models and the shared data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "resources" / "models"
SAMPLES = ROOT / "resources" / "samples"
DATA = ROOT.parent / "shared" / "data"


def make_tiny_model(path: Path, classes=("a", "b", "c"), size=(16, 16), task="blood-differential",
                    metadata_overrides: dict | None = None, with_ood: bool = True) -> Path:
    """A real ONNX model honouring the contract: mean colour → linear → softmax (+ an ood score)."""
    from onnx import TensorProto, helper

    n = len(classes)
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3, n)).astype(np.float32) / 400
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["mean", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    inits = [helper.make_tensor("W", TensorProto.FLOAT, [3, n], weights.flatten().tolist())]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n])]
    if with_ood:
        # distance of the mean colour from mid-grey, scaled: dark or saturated images look "unfamiliar"
        nodes += [helper.make_node("Sub", ["mean", "grey"], ["d"]), helper.make_node("Mul", ["d", "d"], ["d2"]),
                  helper.make_node("ReduceSum", ["d2", "last"], ["ood_score"], keepdims=0)]
        inits += [helper.make_tensor("grey", TensorProto.FLOAT, [3], [128.0] * 3),
                  helper.make_tensor("last", TensorProto.INT64, [1], [1])]
        outputs.append(helper.make_tensor_value_info("ood_score", TensorProto.FLOAT, ["N"]))
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", size[0], size[1], 3])
    graph = helper.make_graph(nodes, "tiny", [image], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    groups = ["wbc"] * n
    meta = {
        "slidetally.schema": "slidetally/1", "task": task, "display_name": f"Tiny {task}", "version": "0.0.1",
        "classes": json.dumps([{"key": k, "label": k.title(), "group": g, "hotkey": str(i + 1)}
                               for i, (k, g) in enumerate(zip(classes, groups))]),
        "input_size": json.dumps(list(size)), "resize": "area", "small_input": "pad-white" if task == "idc-patch" else "resize",
        "temperature": "1.0", "review_threshold": "0.0", "decision_threshold": "0.5", "ood_threshold": "30000",
        "metrics": json.dumps({"accuracy": 0.5, "macro_f1": 0.5, "n": 10}),
        "provenance": json.dumps({"date": "test"}),
    }
    meta.update(metadata_overrides or {})
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def shared_data() -> Path:
    """The data folder beside the checkout (../shared/data); the test is skipped where there is none."""
    if not DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return DATA


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    return make_tiny_model(tmp_path / "tiny.onnx")


def write_image(path: Path, rgb: np.ndarray) -> Path:
    """Write with OpenCV through bytes (works for unicode paths)."""
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def random_rgb(seed: int, size=(40, 40)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


@pytest.fixture
def good_folder(tmp_path) -> Path:
    folder = tmp_path / "good"
    folder.mkdir()
    for i in range(12):
        write_image(folder / f"cell_{i:02d}.png", random_rgb(i))
    return folder


def shipped(name: str) -> Path:
    path = MODELS / name
    if not path.exists():
        pytest.skip(f"{name} not shipped yet")
    return path


def open_window(qtbot, tmp_path: Path, models: Path, settings_file: str = "settings.ini", data_root: Path | None = None):
    """The real main window, shown, with its own data folder (tmp_path/data unless given) and settings file, the
    models in `models` loaded."""
    from PySide6.QtCore import QSettings

    from desktop.ui.main_window import MainWindow

    window = MainWindow(data_root=data_root or tmp_path / "data",
                        settings=QSettings(str(tmp_path / settings_file), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.sessions.load_models((models,))
    return window


def signed_verified_session(folder: Path, model, data: Path, truth: dict[str, str], specimen: str,
                            operator: str = "Ana") -> None:
    """Classify `folder`, set every cell to its true class as a technician would, sign off."""
    from desktop.core.records.session import Session

    s = Session.open(folder, model, data)
    s.classify()
    for c in s.cells():
        s.reclassify([c.file], truth[c.file], operator)
    s.os_user = "tech"  # the technician's own computer login, not the one the tests (and any approver) run under
    s.set_identity(specimen, "", operator)
    s.sign_off(operator)
    s.close()


def specimen_tree(root: Path, per_class: int = 6, specimens: int = 4) -> Path:
    """DIR/<specimen>/<class>/<image> from another lab's real cells (BCCD), spread over `specimens`."""
    import shutil

    i = 0
    for key in ("eosinophil", "lymphocyte", "monocyte", "neutrophil"):
        for path in sorted((DATA / "external_bccd" / key).glob("*.jpg"))[:per_class]:
            target = root / f"spec{i % specimens}" / key / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
            i += 1
    return root


def all_review_blood_model(models: Path) -> Path:
    """A tiny three-class blood model whose every call goes to Review (the bench tests' model)."""
    return make_tiny_model(models / "tiny-blood.onnx", classes=("basophil", "eosinophil", "lymphocyte"), size=(32, 32),
                           metadata_overrides={"review_threshold": "0.99"})


def record_dialogs(monkeypatch, answers: dict) -> None:
    """Message boxes answer `answers["question"]` and are recorded in `answers["asked"]` as "title: text"
    (so a test can tell which dialog asked); a name, when asked, is Ana Ruiz."""
    from PySide6.QtWidgets import QInputDialog, QMessageBox

    def said(*a, **k):
        answers["asked"].append(f"{a[1]}: {a[2]}")

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: (said(*a), answers["question"])[1])
    monkeypatch.setattr(QMessageBox, "warning", said)
    monkeypatch.setattr(QMessageBox, "information", said)
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Ana Ruiz", True))


def served_background(model, timeout: float = 30):
    """The model's white-balance Background once its split front end serves (a condition wait, bounded by
    `timeout`); None if it never does (a model served whole)."""
    import time

    model.start_front_end()
    end = time.monotonic() + timeout
    while model._background is None and time.monotonic() < end:
        time.sleep(0.05)
    return model._background
