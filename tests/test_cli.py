"""The headless CLI: classify a folder, clear one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, SAMPLES


def run_cli(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "desktop.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def test_classify_folder_writes_csv_and_prints_counts(tmp_path, tiny_model, good_folder):
    out = run_cli("classify", str(good_folder), "--model", str(tiny_model), "--csv", str(tmp_path / "c.csv"),
                  "--summary", str(tmp_path / "s.csv"), "--data-dir", str(tmp_path / "data"))
    assert out.returncode == 0, out.stderr
    assert "12 images" in out.stdout
    assert (tmp_path / "c.csv").read_text(encoding="utf-8-sig").count("cell_") == 12


def test_missing_folder_gives_one_line_error_and_nonzero_exit(tmp_path, tiny_model):
    out = run_cli("classify", str(tmp_path / "nowhere"), "--model", str(tiny_model), "--data-dir", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error:") and "does not exist" in out.stderr
    assert "Traceback" not in out.stderr


def test_damaged_model_gives_one_line_error(tmp_path, good_folder):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    out = run_cli("classify", str(good_folder), "--model", str(bad), "--data-dir", str(tmp_path))
    assert out.returncode == 2 and "bad.onnx" in out.stderr and "Traceback" not in out.stderr


def test_bundled_samples_classify_with_shipped_models(tmp_path):
    from conftest import shipped

    shipped("blood-pbc8.onnx")
    out = run_cli("classify", str(SAMPLES / "blood"), "--data-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "40 images" in out.stdout and "WBC counted" in out.stdout


def test_classify_with_specimen_and_a_signed_session_is_never_changed(tmp_path, tiny_model, good_folder):
    from conftest import random_rgb, write_image

    from desktop.core.inference.model import Model
    from desktop.core.records.session import Session

    data = tmp_path / "data"
    out = run_cli("classify", str(good_folder), "--model", str(tiny_model), "--data-dir", str(data),
                  "--specimen", "B-17", "--operator", "Kim")
    assert out.returncode == 0, out.stderr
    assert "Specimen ID: B-17" in out.stdout and "Not signed off — preliminary" in out.stdout
    session = Session.open(good_folder, Model(tiny_model), data)
    session.sign_off("Kim")
    before = session.cells()
    session.close()
    write_image(good_folder / "late.png", random_rgb(77))
    (good_folder / "cell_00.png").unlink()
    out = run_cli("classify", str(good_folder), "--model", str(tiny_model), "--data-dir", str(data),
                  "--csv", str(tmp_path / "c.csv"))
    assert out.returncode == 0, out.stderr
    assert "warning:" in out.stderr and "late.png" in out.stderr and "cell_00.png" in out.stderr
    import json

    identity = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))["identity"]  # the per-cell CSV's sidecar
    assert "late.png" in identity["folder_changes"] and "cell_00.png" in identity["folder_changes"]
    assert identity["signed_at"] and identity["signed_by"] == "Kim"
    session = Session.open(good_folder, Model(tiny_model), data)
    assert session.cells() == before
    session.close()


def test_a_folder_foreign_to_the_model_stops_with_exit_4_unless_forced(tmp_path, good_folder):
    from conftest import make_tiny_model

    model = make_tiny_model(tmp_path / "strict.onnx", metadata_overrides={"ood_threshold": "0.001"})
    out = run_cli("classify", str(good_folder), "--model", str(model), "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 4 and "--force" in out.stderr and "unfamiliar" in out.stderr
    out = run_cli("classify", str(good_folder), "--model", str(model), "--data-dir", str(tmp_path / "d"), "--force")
    assert out.returncode == 0 and "12 images" in out.stdout
