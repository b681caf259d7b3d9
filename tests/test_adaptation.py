"""Site adaptation with the app's own runtime: the grafted head matches its numpy reference,
the file honours the contract, few-cell classes keep the base head, and a set too small to
estimate anything is refused with what is missing."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import ROOT, make_tiny_model, signed_verified_session, write_image

from desktop.core.inference.decision import decide
from desktop.core.inference.model import Model, discover_models
from desktop.core.lab.adaptation import AdaptationRefused, adapt
from desktop.core.lab.graft import read_head, site_scores
from desktop.core.lab.site_cells import cells_from_folder, extract
from desktop.core.lab.site_model import prepare_adaptation, write_site_model

COLOURS = {"a": (200, 60, 60), "b": (60, 200, 60), "c": (60, 60, 200)}


def site_folder(root, per_class: dict[str, int], seed: int = 0):
    """A lab whose cells are told apart by colour, which the base model's random head gets wrong."""
    rng = np.random.default_rng(seed)
    for key, n in per_class.items():
        (root / key).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rgb = np.clip(np.array(COLOURS[key]) + rng.normal(0, 25, (16, 16, 3)), 0, 255).astype(np.uint8)
            write_image(root / key / f"{key}{i:03d}.png", rgb)
    return root


@pytest.fixture
def base(tmp_path):
    return Model(make_tiny_model(tmp_path / "base.onnx", metadata_overrides={"review_threshold": "0.5"}))


def test_adapted_model_learns_the_site_passes_validation_and_matches_numpy(tmp_path, base):
    fit = site_folder(tmp_path / "fit", {"a": 30, "b": 30, "c": 30})
    held_out = site_folder(tmp_path / "held", {"a": 20, "b": 20, "c": 20}, seed=1)
    prepared = prepare_adaptation(base, cells_from_folder(fit, base.info), {"verified_folder": str(fit)})
    a = prepared.adaptation
    assert a.after.accuracy > 0.9 > a.before.accuracy
    models = tmp_path / "user-models"
    path = write_site_model(base, prepared, "North Lab", "Dr. Lee", models)
    site = Model(path)  # the contract check every model gets
    assert path.name == "base-site-north-lab-1.onnx" and site.info.version == "0.0.1+site.north-lab.1"
    meta = json.loads(site.session.get_modelmeta().custom_metadata_map["site"])
    assert meta["base_sha256"] == base.info.sha256 and meta["approved_by"] == "Dr. Lee"
    assert meta["cells_per_class"] == {"a": 30, "b": 30, "c": 30} and meta["after"]["n"] == 90
    # the grafted graph against the numpy reference of the fitted head, on images it never saw
    cells = cells_from_folder(held_out, base.info)
    images = np.stack([__import__("desktop.core.inference.imaging", fromlist=["x"]).load_prepared(c.path, base.info.input)
                       for c in cells])
    probs, ood, features = site.predict_with_features(images)
    ref_p, ref_ood = site_scores(features.astype(np.float64), a.site)
    assert np.abs(probs - ref_p).max() <= 1e-5 and np.abs(ood - ref_ood).max() <= 1e-4 * max(1.0, ref_ood.max())
    labels = np.array([c.label for c in cells])
    assert (decide(probs, ood, site.info.review_threshold, site.info.ood_threshold).top == labels).mean() > 0.9
    # it is an assay of its own beside the base model; the base file is untouched
    infos, problems = discover_models(tmp_path, models)
    assert {i.key for i in infos} >= {"base", "base-site-north-lab-1"} and not problems
    assert Model(tmp_path / "base.onnx").info.sha256 == base.info.sha256


def test_a_class_with_few_verified_cells_stays_close_to_the_base_head(tmp_path, base):
    site, _ = extract(base, cells_from_folder(site_folder(tmp_path / "s", {"a": 25, "b": 25, "c": 3}), base.info))
    head = read_head(onnx.load(str(base.info.path)))
    a = adapt(site, head, base.info.class_keys, 0.5, base.info.ood_threshold)
    assert a.kept_from_base == ["c"]
    std = site.features.std(axis=0)  # compare in the standardised space the penalty works in

    def moved(k: int) -> float:
        return float(np.linalg.norm((a.site.weights[:, k] * a.temperature - head.weights[:, k]) * std))

    c = base.info.class_keys.index("c")
    assert moved(c) < 0.5 * min(moved(0), moved(1))


def test_a_set_too_small_is_refused_saying_what_is_missing(tmp_path, base):
    site, _ = extract(base, cells_from_folder(site_folder(tmp_path / "s", {"a": 30, "b": 4, "c": 2}), base.info))
    with pytest.raises(AdaptationRefused, match=r"36 cells \(a 30, b 4, c 2\)"):
        adapt(site, read_head(onnx.load(str(base.info.path))), base.info.class_keys, 0.5, None)


def test_cli_verify_and_adapt_from_signed_sessions(tmp_path, base):

    data = tmp_path / "data"
    for n in range(3):  # three signed sessions of one lab, its technicians' calls by colour
        folder = site_folder(tmp_path / f"slide{n}", {"a": 10, "b": 10, "c": 10}, seed=n)
        flat = tmp_path / f"flat{n}"
        flat.mkdir()
        truth = {}
        for path in folder.rglob("*.png"):
            path.rename(flat / path.name)
            truth[path.name] = path.parent.name
        signed_verified_session(flat, base, data, truth, f"S-{n}")
    run = lambda *a: subprocess.run([sys.executable, "-m", "desktop.cli", *a, "--model", str(base.info.path),
                                     "--data-dir", str(data)], capture_output=True, text=True, cwd=ROOT, timeout=180)
    out = run("verify", "--csv", str(tmp_path / "v.csv"), "--pdf", str(tmp_path / "v.pdf"))
    assert out.returncode == 0, out.stderr
    assert "3 session(s), 90 cells" in out.stdout
    assert (tmp_path / "v.pdf").read_bytes().startswith(b"%PDF") and (tmp_path / "v.csv").exists()
    out = run("adapt", "--from-sessions", "--site", "north", "--out", str(tmp_path / "site.onnx"), "--approved-by", "ana")
    assert out.returncode == 2 and "another person must approve" in out.stderr  # Ana signed the cells
    assert not (tmp_path / "site.onnx").exists()
    out = run("adapt", "--from-sessions", "--site", "north", "--out", str(base.info.path), "--approved-by", "Dr. Lee")
    assert out.returncode == 2 and "never replaces a model" in out.stderr
    out = run("adapt", "--from-sessions", "--site", "north", "--out", str(tmp_path / "site.onnx"), "--approved-by", "Dr. Lee")
    assert out.returncode == 0, out.stderr
    assert "site cross-validated (3-fold; no session" in out.stdout
    assert Model(tmp_path / "site.onnx").info.version.endswith("+site.north.1")


def test_folds_keep_each_specimen_whole_and_balance_cells_and_classes():
    """fold_ids, pinned (issue 41: a mutation of its class balance survived): with specimens, none is split over two
    folds and the folds' cell counts stay within one specimen of each other; without, every class is spread evenly."""
    import numpy as np

    from desktop.core.lab.adaptation import fold_ids

    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(10), [30, 25, 20, 18, 15, 12, 10, 8, 5, 3])
    labels = rng.integers(0, 3, len(groups))
    ids, _ = fold_ids(labels, groups, folds=5)
    assert all(len(set(ids[groups == g])) == 1 for g in np.unique(groups))
    loads = np.bincount(ids, minlength=5)
    assert loads.max() - loads.min() <= 5  # largest specimens first, each to the lightest fold: 30 30 28 28 30
    labels = np.repeat([0, 1, 2], [23, 17, 9])
    ids, _ = fold_ids(labels, np.zeros(len(labels)), folds=5)
    for k in range(3):
        per_fold = np.bincount(ids[labels == k], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1, (k, per_fold)
