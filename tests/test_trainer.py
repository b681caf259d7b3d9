"""The trainer end to end on a handful of real images (1 epoch), and its data rules."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import DATA, random_rgb, shipped, write_image

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.trainer

from desktop.core.inference.front_end import split  # noqa: E402
from desktop.core.inference.model import Model  # noqa: E402
from trainer.data import deduplicate, discover_blood, split_blood, split_idc  # noqa: E402


def _need(path):
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path


def test_duplicates_are_dropped_and_label_conflicts_removed(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
    write_image(tmp_path / "a" / "one.png", random_rgb(1))
    shutil.copy(tmp_path / "a" / "one.png", tmp_path / "a" / "one_copy.png")  # same class: keep one
    write_image(tmp_path / "a" / "two.png", random_rgb(2))
    shutil.copy(tmp_path / "a" / "two.png", tmp_path / "b" / "two_elsewhere.png")  # two classes: drop both
    write_image(tmp_path / "b" / "three.png", random_rgb(3))
    _, items = discover_blood(tmp_path)
    kept, report = deduplicate(items)
    assert sorted(i.path.name for i in kept) == ["one.png", "three.png"]
    assert len(report["duplicates_dropped"]) == 1 and len(report["label_conflicts_dropped"]) == 1


def test_blood_split_is_reproducible_stratified_and_disjoint():
    root = _need(DATA / "pbc")
    first, second = split_blood(root, limit_per_class=30), split_blood(root, limit_per_class=30)
    assert first.split_hash() == second.split_hash()
    paths = [{str(i.path) for i in first.items[s]} for s in ("train", "val", "test")]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    test_counts = first.counts()["test"]
    assert all(n >= 5 for n in test_counts.values())


def test_idc_split_never_puts_a_patient_in_two_splits():
    root = _need(DATA / "idc")
    patients = sorted(p.name for p in root.iterdir() if p.is_dir())
    dataset = split_idc(root, patients[:40])
    groups = [{i.group for i in dataset.items[s]} for s in ("train", "val", "test")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    for s in ("train", "val", "test"):
        assert any(i.label == 1 for i in dataset.items[s]), f"{s} has no IDC"


def test_blood_pipeline_end_to_end_on_48_images(tmp_path, monkeypatch):
    from trainer import lab_book
    from trainer.recipe import RecipeChanged, resolve
    from trainer.train import run

    root = _need(DATA / "pbc")
    book = tmp_path / "lab_book.jsonl"
    monkeypatch.setattr(lab_book, "LAB_BOOK", book)
    recipe = resolve("blood", epochs=1, seed_epochs=1, limit=6)
    results = run(recipe, root, tmp_path / "run", external=DATA / "external_bccd")
    onnx_path = tmp_path / "run" / "blood-pbc8.onnx"
    model = Model(onnx_path)  # the desktop core reads the metadata back
    assert model.info.task == "blood-differential" and len(model.info.classes) == 8
    assert model.has_ood
    assert results.parity["same_top1"] and results.parity["max_abs_dprob"] <= 1e-4
    assert split(onnx_path.read_bytes()) is not None  # its white balance can be served split
    for png in ("confusion", "curves", "reliability"):
        assert (tmp_path / "run" / f"{png}.png").stat().st_size > 1000
    card = (tmp_path / "run" / "blood-pbc8.card.md").read_text()
    assert "## Limits" in card and "seed" in card
    provenance = model.info.provenance
    assert provenance["recipe"] == recipe.as_dict() and provenance["trainer_git_sha"] == lab_book.git_sha()

    # Resumed with the same recipe: weights reused, and the run still gets its lab-book rows.
    run(recipe, root, tmp_path / "run", external=DATA / "external_bccd")
    rows = [json.loads(line) for line in book.read_text().splitlines()]
    assert [(r["name"], r["resumed"]) for r in rows] == [("seed", False), ("slidenet", False),
                                                         ("seed", True), ("slidenet", True)]
    # Resumed with another recipe: refused before anything is touched.
    with pytest.raises(RecipeChanged, match="epochs"):
        run(resolve("blood", epochs=2, seed_epochs=1, limit=6), root, tmp_path / "run")


def test_idc_pipeline_end_to_end_on_a_few_patients(tmp_path):
    from trainer.recipe import resolve
    from trainer.train import run

    root = _need(DATA / "idc")
    results = run(resolve("idc", epochs=1, seed_epochs=1, limit=12), root, tmp_path / "run", lab_book_row=False)
    model = Model(tmp_path / "run" / "breast-idc.onnx")
    assert model.info.task == "idc-patch" and model.info.input.small_input == "pad-white"
    assert 0 < model.info.decision_threshold < 1
    assert "roc_auc" in results.ours
    card = (tmp_path / "run" / "breast-idc.card.md").read_text()
    facts = results.data
    assert facts["patients"] == 12 and f"{facts['images']:,} patches from 12 patients" in card
    # the slide-level step is declared for the app to run, and the card says every figure went through it
    assert model.info.slide_step is not None and model.info.slide_step.weight == resolve("idc").slide_step_weight
    assert "Slide-level step" in card
    # the scale of its input pixels, recorded from the data's description, for whole-slide images
    assert model.session.get_modelmeta().custom_metadata_map["mpp"] == "4.0" and "4 µm per input pixel" in card


def test_white_balance_divides_out_another_labs_tint_and_is_the_identity_when_off():
    import tensorflow as tf

    from trainer.architectures import WhiteBalance, bright_background

    rng = np.random.default_rng(0)
    image = np.full((1, 96, 96, 3), 230.0, np.float32)
    image[0, 30:66, 30:66] = rng.uniform(60, 160, (36, 36, 3))  # a "cell" on bright glass
    tinted = image * np.array([1.0, 0.93, 0.70], np.float32)  # a yellow lamp
    reference = [230.0, 230.0, 230.0]
    layer = WhiteBalance(reference)
    np.testing.assert_allclose(bright_background(tf.constant(tinted)).numpy()[0], [230.0, 213.9, 161.0], rtol=1e-3)
    np.testing.assert_allclose(layer(tf.constant(tinted)).numpy(), image, rtol=1e-4, atol=1e-3)
    off = WhiteBalance(reference, enabled=False)
    np.testing.assert_array_equal(off(tf.constant(tinted)).numpy(), tinted)


def test_ood_score_rises_on_a_stain_shifted_copy():
    from trainer.augment import stain_shift

    model = Model(shipped("blood-pbc8.onnx"))
    from conftest import SAMPLES

    from desktop.core.inference.imaging import load_prepared
    from desktop.core.inference.scan import scan_folder

    files = scan_folder(SAMPLES / "blood")[::5]
    images = np.stack([load_prepared(f.path, model.info.input) for f in files])
    _, base = model.predict(images)
    _, shifted = model.predict(stain_shift(images, (1.8, 0.5, 1.0), (0.25, -0.1, 0.0)))
    assert np.median(shifted) > np.median(base)
    assert (shifted > base).mean() >= 0.75


def test_an_unreadable_patch_does_not_shift_the_patients_after_it(tmp_path):
    """Decoding drops an unreadable file from pixels, labels and items alike, so per-patient
    fractions stay with their patients (they were zipped against the undecoded list)."""
    from desktop.core.inference.imaging import InputSpec
    from trainer.data import Item, load_arrays
    from trainer.slides import idc_patients

    items = []
    for patient, labels in (("A", (0, 0)), ("B", (1, 1))):
        for n, label in enumerate(labels):
            path = tmp_path / f"{patient}_idx5_x{50 * n}_y0_class{label}.png"
            write_image(path, random_rgb(n + (10 if patient == "B" else 0), (50, 50)))
            items.append(Item(path, label, patient))
    items[0].path.write_bytes(b"not a png")  # patient A's first patch is unreadable
    decoded, skipped = load_arrays(items, InputSpec(50, 50, "area", "pad-white"))
    assert len(skipped) == 1 and len(decoded.x) == len(decoded.y) == len(decoded.items) == 3
    patients = idc_patients(decoded.items, decoded.y.astype(float), 0.5, decoded.y)
    assert patients == {"A": {"n": 1, "true": 0.0, "predicted": 0.0}, "B": {"n": 2, "true": 1.0, "predicted": 1.0}}


def test_recipe_overrides_change_only_what_they_name(tmp_path):
    from trainer.recipe import DEFAULTS, RecipeChanged, pin, resolve

    recipe = resolve("blood", scale_min=0.5)
    assert recipe.augment.scale_min == 0.5
    assert recipe.augment.blur_prob == DEFAULTS["blood"].augment.blur_prob  # --scale-min used to set blur 0.2
    pin(recipe, tmp_path)
    pin(resolve("blood", scale_min=0.5), tmp_path)  # the same recipe resumes
    with pytest.raises(RecipeChanged, match="augment"):
        pin(resolve("blood", scale_min=0.6), tmp_path)
