"""`bench` (not timed here): the stage breakdown is printed, and `--compare` alternates this
build with a reference (a checkout, or a model file) and prints the ratios."""

from __future__ import annotations

import argparse
import re

from conftest import ROOT, make_tiny_model
from hostile import cli

from desktop.cli.bench_compare import FIGURES, _sides, parse_bench

# What the bench of main before this change printed (5bd1efa / 6f161da): a reference checkout
# without --compare must still be readable.
OLD_OUTPUT = """model breast-idc v3.0.0, 3000 images from /data/idc, 2 cores
  D decode+resize     10151 img/s
  M model alone        8461 img/s (batch 64)
  E end-to-end         1990 img/s (read+decode+resize+infer+store)
  limit 1/(1/D+1/M)    4615 img/s; E / limit = 0.43
  peak RSS 145 MB
"""


def _runs(stdout: str) -> list[tuple[int, str]]:
    return [(int(n), side) for n, side in re.findall(r"^  run (\d+): ([AB]) ", stdout, re.M)]


def _ratio_rows(stdout: str) -> dict[str, list[float]]:
    rows = {}
    for name in FIGURES:
        line = next((x for x in stdout.splitlines() if x.strip().startswith(name + " ")), None)
        assert line is not None, f"no ratio line for {name}:\n{stdout}"
        rows[name] = [float(v) for v in re.findall(r"\d+\.\d+", line)]
    return rows


def test_the_bench_prints_each_stage_of_the_end_to_end_path(tiny_model, good_folder):
    out = cli("bench", good_folder, "--model", tiny_model, "--images", "24", "--batch", "4")
    assert out.returncode == 0, out.stderr[-2000:]
    for stage in ("list", "read+hash", "decode", "model", "decide", "store"):
        assert re.search(rf"^\s+{re.escape(stage)}\s+[\d.]+ µs", out.stdout, re.M), out.stdout
    assert "CPU per image" in out.stdout
    figures = parse_bench(out.stdout)
    assert figures["E img/s"] > 0
    # the figures are each other's, not only in the right format: the limit of decode and model in series, and E's share
    assert abs(figures["limit img/s"] - 1 / (1 / figures["D img/s"] + 1 / figures["M img/s"])) <= 1
    assert abs(figures["E / limit"] - figures["E img/s"] / figures["limit img/s"]) <= 0.01


def test_compare_with_a_checkout_alternates_a_b_a_b_and_prints_the_ratios(tiny_model, good_folder):
    out = cli("bench", good_folder, "--model", tiny_model, "--images", "16", "--batch", "4", "--compare", ROOT,
              "--rounds", "2", timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert _runs(out.stdout) == [(1, "A"), (2, "B"), (3, "A"), (4, "B")]
    rows = _ratio_rows(out.stdout)
    for name, values in rows.items():
        assert len(values) == 3, (name, values)  # two rounds and their median
        assert all(v > 0 for v in values), (name, values)
        assert abs(values[2] - (values[0] + values[1]) / 2) <= 0.011, (name, values)  # the median of two rounds


def test_compare_with_a_model_file_runs_both_models_in_turn(tmp_path, tiny_model, good_folder):
    other = make_tiny_model(tmp_path / "other.onnx")
    out = cli("bench", good_folder, "--model", tiny_model, "--images", "16", "--batch", "4", "--compare", other,
              "--rounds", "1", timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert _runs(out.stdout) == [(1, "A"), (2, "B")]
    assert "B model other.onnx" in out.stdout
    assert len(_ratio_rows(out.stdout)["E img/s"]) == 2


def test_compare_refuses_a_reference_that_is_neither_checkout_nor_model(tmp_path, tiny_model, good_folder):
    out = cli("bench", good_folder, "--model", tiny_model, "--compare", tmp_path)
    assert out.returncode != 0
    assert "neither a checkout" in out.stderr and "Traceback" not in out.stderr


def test_an_older_bench_output_is_read_figure_by_figure():
    figures = parse_bench(OLD_OUTPUT)
    assert figures == {"D img/s": 10151, "M img/s": 8461, "E img/s": 1990, "limit img/s": 4615, "E / limit": 0.43,
                       "peak RSS MB": 145}


def test_a_checkout_from_before_the_cli_package_is_a_reference(tmp_path):
    (tmp_path / "desktop").mkdir()
    (tmp_path / "desktop" / "cli.py").write_text("")  # 0.1's layout: one cli module
    sides = _sides(argparse.Namespace(compare=str(tmp_path), model="blood-pbc"))
    assert [side[1] for side in sides][1] == tmp_path.resolve()
