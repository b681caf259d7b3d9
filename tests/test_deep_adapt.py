"""Deep site adaptation (`slidetally-train adapt`): the rebuild is exact, the folds never split a
specimen, copies are one group, and the guard rails refuse what a lab director would refuse."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import DATA, MODELS, shipped, specimen_tree

pytestmark = pytest.mark.trainer
pytest.importorskip("tensorflow")

from desktop.core.errors import ModelError  # noqa: E402
from desktop.core.inference.imaging import load_prepared  # noqa: E402
from desktop.core.inference.model import Model  # noqa: E402
from desktop.core.lab.site_guard import SiteModelRefused, check_site_metadata  # noqa: E402
from desktop.core.lab.site_install import install_site_model  # noqa: E402
from trainer.adapt import grouped_folds  # noqa: E402
from trainer.adapt_cli import main as adapt_main  # noqa: E402
from trainer.rebuild import prove_rebuild, rebuild  # noqa: E402
from trainer.site_data import from_folder  # noqa: E402

BCCD = DATA / "external_bccd"


@pytest.mark.parametrize("name", ["blood-pbc8.onnx", "breast-idc.onnx"])
def test_shipped_model_rebuilds_exactly_in_keras(name):
    path = shipped(name)
    info = Model(path).info
    files = sorted((DATA / "pbc_fullres_samples").rglob("*.jpg"))[:24] if "blood" in name else \
        sorted((MODELS.parent / "samples").rglob("*.png"))[:24]
    images = np.stack([load_prepared(f, info.input) for f in files])
    assert prove_rebuild(rebuild(onnx.load(str(path))), images) <= 1e-4


def test_grouped_folds_never_put_one_specimen_on_both_sides():
    rng = np.random.default_rng(1)
    groups = np.array([f"s{g}" for g in rng.integers(0, 11, 500)])
    labels = rng.integers(0, 5, 500)
    folds = grouped_folds(labels, groups, 3)
    for g in np.unique(groups):
        assert len(np.unique(folds[groups == g])) == 1, g
    assert len(np.unique(folds)) == 3


def test_copies_and_hard_links_of_one_image_are_one_group(tmp_path):
    root = specimen_tree(tmp_path / "v", per_class=3, specimens=3)
    first = sorted(root.glob("spec0/*/*.jpg"))[0]
    copy_target = root / "spec1" / first.parent.name / "copy.jpg"
    (root / "spec2" / first.parent.name).mkdir(parents=True, exist_ok=True)
    os.link(first, root / "spec2" / first.parent.name / "link.jpg")
    shutil.copy(first, copy_target)
    site = from_folder(root, Model(shipped("blood-pbc8.onnx")).info)
    assert site.grouped_by_specimen
    assert site.specimens == 1  # the shared image ties the three specimens into one group


def test_class_layout_without_specimens_is_grouped_by_image_and_says_so(tmp_path):
    for key in ("lymphocyte", "neutrophil"):
        (tmp_path / key).mkdir()
        for path in sorted((BCCD / key).glob("*.jpg"))[:3]:
            shutil.copy(path, tmp_path / key / path.name)
    site = from_folder(tmp_path, Model(shipped("blood-pbc8.onnx")).info)
    assert not site.grouped_by_specimen
    assert site.specimens == 6


def test_out_over_a_shipped_model_is_refused_before_any_work(tmp_path):
    target = shipped("blood-pbc8.onnx")
    before = target.read_bytes()
    code = adapt_main(["--base", "blood-pbc8", "--verified", str(specimen_tree(tmp_path / "v", 2)), "--site", "north",
                       "--out", str(target), "--approved-by", "Dr Lee", "--models-dir", str(tmp_path / "models")])
    assert code == 2
    assert target.read_bytes() == before
    code = adapt_main(["--base", "blood-pbc8", "--verified", str(tmp_path / "v"), "--site", "north",
                       "--out", str(tmp_path / "breast-idc.onnx"), "--approved-by", "Dr Lee",
                       "--models-dir", str(tmp_path / "models")])
    assert code == 2  # the key of another assay
    assert not (tmp_path / "breast-idc.onnx").exists()


def _candidate(tmp_path: Path, before: float, after: float, signed_by=("Ann",)) -> Path:
    proto = onnx.load(str(shipped("blood-pbc8.onnx")))
    site = {"base_sha256": Model(shipped("blood-pbc8.onnx")).info.sha256, "signed_by": list(signed_by),
            "before": {"accuracy": before, "balanced_accuracy": before},
            "after": {"accuracy": after, "balanced_accuracy": after}, "approved_by": ""}
    entry = proto.metadata_props.add()
    entry.key, entry.value = "site", json.dumps(site)
    path = tmp_path / "candidate.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


def test_worse_site_model_needs_an_override_that_names_the_loss(tmp_path):
    candidate = _candidate(tmp_path, before=0.80, after=0.75)
    out = tmp_path / "models" / "blood-pbc8-site-north-1.onnx"
    with pytest.raises(SiteModelRefused, match="80.0% → 75.0%"):
        install_site_model(candidate, out, "Dr Lee", [shipped("blood-pbc8.onnx")], [MODELS])
    assert not out.exists()
    install_site_model(candidate, out, "Dr Lee", [shipped("blood-pbc8.onnx")], [MODELS], override="pilot only")
    site = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["site"])
    assert site["override"].startswith("accuracy 80.0% → 75.0%") and "pilot only" in site["override"]
    assert site["approved_by"] == "Dr Lee"


def test_approver_must_not_have_signed_the_cells(tmp_path):
    candidate = _candidate(tmp_path, 0.7, 0.9, signed_by=("Dr Lee",))
    with pytest.raises(SiteModelRefused, match="another person"):
        install_site_model(candidate, tmp_path / "m" / "x.onnx", " dr lee ", [], [MODELS])


def test_site_metadata_out_of_range_or_unknown_base_is_refused():
    sha = Model(shipped("blood-pbc8.onnx")).info.sha256
    good = {"site": json.dumps({"base_sha256": sha, "approved_by": "Dr Lee"}), "review_threshold": "0.9", "temperature": "1.0",
            "ood_threshold": "2.0", "metrics": json.dumps({"accuracy": 0.9})}
    check_site_metadata(good, {sha})
    for bad in ({"site": json.dumps({"base_sha256": "0" * 64, "approved_by": "Dr Lee"})},
                {"site": json.dumps({"base_sha256": sha, "approved_by": ""})}, {"review_threshold": "0"},
                {"ood_threshold": "1e30"}, {"temperature": "nan"}, {"metrics": json.dumps({"accuracy": 1.5})}):
        with pytest.raises(ModelError):
            check_site_metadata({**good, **bad}, {sha})


def test_deep_adapt_end_to_end_writes_a_contract_model_with_grouped_figures(tmp_path):
    root = specimen_tree(tmp_path / "v", per_class=12, specimens=4)
    out, report = tmp_path / "north.onnx", tmp_path / "north.json"
    code = adapt_main(["--base", "blood-pbc8", "--verified", str(root), "--site", "North Lab", "--out", str(out),
                       "--approved-by", "Dr Lee", "--report", str(report), "--max-epochs", "1", "--min-steps", "1",
                       "--accept-loss", "test run", "--no-lab-book", "--models-dir", str(tmp_path / "models")])
    assert code == 0
    figures = json.loads(report.read_text())
    assert figures["specimens"] == 4 and figures["cells"] == 48 and figures["grouped_by_specimen"]
    assert set(figures["after"]) == {"accuracy", "balanced_accuracy", "accepted_share", "accepted_accuracy",
                                     "accuracy_interval"}
    model = Model(out)  # the contract check every model gets
    assert model.has_features and model.info.version.endswith("+site.north-lab.1")
    meta = dict(model.session.get_modelmeta().custom_metadata_map)
    site = json.loads(meta["site"])
    assert site["method"] == "deep" and site["base_sha256"] == Model(shipped("blood-pbc8.onnx")).info.sha256
    assert json.loads(meta["metrics"])["estimate"] == "site cross-validated"
    assert out.with_suffix(".card.md").read_text().count("Site adaptation") == 1


def test_forged_site_model_is_not_listed_and_does_not_hide_the_others(tmp_path):
    from desktop.core.inference.model import discover_models

    shutil.copy(shipped("blood-pbc8.onnx"), tmp_path / "blood-pbc8.onnx")
    proto = onnx.load(str(shipped("blood-pbc8.onnx")))
    forged = {"base_sha256": "0" * 64, "approved_by": "Dr Lee", "after": {"accuracy": 0.9999}}
    entry = proto.metadata_props.add()
    entry.key, entry.value = "site", json.dumps(forged)
    (tmp_path / "blood-pbc8-site-north-1.onnx").write_bytes(proto.SerializeToString())
    infos, problems = discover_models(tmp_path)
    assert [i.key for i in infos] == ["blood-pbc8"]
    assert any("blood-pbc8-site-north-1" in p and "not installed" in p for p in problems)
    assert infos[0].accuracy_label == "test accuracy"


def test_whole_network_is_offered_only_where_tensorflow_is_installed(monkeypatch):
    import importlib.util

    from desktop.core.lab import deep_runner

    assert deep_runner.trainer_command() is not None  # this environment has the trainer extra
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    assert deep_runner.trainer_command() is None  # `pip install .` alone still has the slidetally-train script
