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
