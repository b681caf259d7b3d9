"""The model contract has one writer (desktop/core/inference/contract.py): the shipped models read back
through it unchanged, the quick and the deep site adaptation write the same provenance, older site
models' forms still read, and IDC's scale is stated in one place."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
from conftest import MODELS, ROOT, make_tiny_model

from desktop.core.inference.contract import (
    DEEP,
    IDC_MPP,
    ModelMetadata,
    SiteProvenance,
    read_props,
)
from desktop.core.inference.model import Model
from desktop.core.inference.model_info import parse_metadata
from desktop.core.lab.adaptation import RuleFigures

SHIPPED = sorted(MODELS.glob("*.onnx"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_model_metadata_round_trips_through_the_contract_unchanged(path: Path):
    props = read_props(onnx.load(str(path), load_external_data=False))
    metadata = ModelMetadata.from_props(props)
    written = metadata.to_props()
    assert written == props and list(written) == list(props)  # every key, value and their order
    assert ModelMetadata.from_props(written) == metadata
    # what the app shows from it: the same names, classes and figures
    assert parse_metadata(written, path) == parse_metadata(props, path)
    info = Model(path).info
    assert (info.display_name, info.version, info.task) == (metadata.display_name, metadata.version, metadata.task)
    assert info.classes == metadata.classes


def test_shipped_models_are_found():
    assert {p.stem for p in SHIPPED} >= {"blood-pbc8", "breast-idc"}


# --- the two site writers ------------------------------------------------------------------------------

SOURCE = {"sessions": ["S-1", "S-2"], "since": "", "cells": 90, "signed_by": ["Ana", "Ben"],
          "signed_logins": ["ana", "ben"]}


def _figures(accuracy: float) -> RuleFigures:
    return RuleFigures(90, accuracy, accuracy - 0.02, 0.9, accuracy + 0.01, (accuracy - 0.05, accuracy + 0.03))


def _fitted() -> dict:
    """What either adaptation fitted, the same for both."""
    return {"temperature": 1.2345678, "review_threshold": 0.7, "ood_threshold": 2.345678912,
            "before": _figures(0.6), "after": _figures(0.9), "cells_per_class": {"a": 30, "b": 30, "c": 30},
            "folds": "3-fold grouped by session (3 sessions)", "notes": ["a note"]}


def _quick(base: Model) -> dict[str, str]:
    from desktop.core.lab.site_model import site_metadata

    adaptation = SimpleNamespace(**_fitted(), kept_from_base=["c"], strength=0.1)
    return site_metadata(base, adaptation, "north", 1, "Dr. Lee", dict(SOURCE))


def _deep(base: Model) -> dict[str, str]:
    pytest.importorskip("tensorflow")
    from trainer import adapt

    result = SimpleNamespace(**_fitted(), review_classes=["c"], specimens=3, grouped_by_specimen=True, epochs=4,
                             epoch_rule="rule", unlabelled=0, pseudo_labelled=0, parity={"n": 32, "max_abs_dprob": 1e-6})
    return adapt.site_metadata(base, result, "north", 1, "Dr. Lee", dict(SOURCE))


@pytest.mark.trainer
def test_quick_and_deep_site_writers_write_the_same_provenance(tmp_path):
    base = Model(make_tiny_model(tmp_path / "base.onnx"))
    quick, deep = _quick(base), _deep(base)
    assert set(quick) == set(deep)
    quick_site, deep_site = json.loads(quick["site"]), json.loads(deep["site"])
    assert set(quick_site) == set(deep_site)
    assert set(json.loads(quick["provenance"])) == set(json.loads(deep["provenance"]))
    assert set(json.loads(quick["metrics"])) == set(json.loads(deep["metrics"]))
    for key in ("base_model", "base_display_name", "base_version", "base_sha256", "cells_per_class", "source",
                "signed_by", "signed_logins", "before", "after", "approved_by", "cross_validation"):
        assert quick_site[key] == deep_site[key], key
    # one meaning of base_model (the base's key), the signers beside the source, never inside it
    assert quick_site["base_model"] == "base" and quick_site["base_display_name"] == base.info.display_name
    assert quick_site["signed_by"] == ["Ana", "Ben"] and quick_site["signed_logins"] == ["ana", "ben"]
    assert "signed_by" not in quick_site["source"] and "signed_logins" not in quick_site["source"]
    for key in ("version", "temperature", "review_threshold", "ood_threshold", "decision_threshold", "review_classes"):
        assert quick[key] == deep[key], key
    assert quick_site["method"] == "quick" and deep_site["method"] == DEEP
    assert deep["display_name"] == quick["display_name"] + " (whole network)"


def test_a_quick_site_model_reads_back_its_base_by_key_and_name(tmp_path):
    base = Model(make_tiny_model(tmp_path / "base.onnx"))
    props = {**read_props(onnx.load(str(base.info.path))), **_quick(base)}
    site = ModelMetadata.from_props(props).site
    assert (site.base_key, site.base_display_name, site.base_sha256) == ("base", "Tiny blood-differential",
                                                                         base.info.sha256)
    assert site.signed_by == ("Ana", "Ben") and site.approved_by == "Dr. Lee"
    assert ModelMetadata.from_props(props).to_props() == props


def test_older_site_models_still_read_with_their_base_and_signers():
    deep = {"name": "north", "number": 1, "method": "deep", "base_model": "Blood smear differential (PBC, 8 classes)",
            "base_version": "3.0.0", "base_sha256": "ab" * 32, "signed_by": ["Ana"], "epochs": 4,
            "source": {"sessions": ["S-1"], "signed_logins": ["ana"]}, "approved_by": "Dr Lee", "override": ""}
    old = SiteProvenance.from_dict(deep, "Blood smear differential (PBC, 8 classes) — adapted to north #1 (whole network)")
    assert (old.base_key, old.base_display_name) == ("", "Blood smear differential (PBC, 8 classes)")
    assert old.signed_by == ("Ana",) and old.signed_logins == ("ana",) and old.source == {"sessions": ["S-1"]}
    assert old.fitting == {"epochs": 4}

    quick = {"name": "north", "number": 2, "base_model": "blood-pbc8", "base_version": "3.0.0",
             "source": {"sessions": ["S-1"], "signed_by": ["Ana"], "signed_logins": ["ana"]}, "penalty_strength": 0.1}
    old = SiteProvenance.from_dict(quick, "Blood smear differential (PBC, 8 classes) — adapted to north #2")
    assert (old.base_key, old.base_display_name) == ("blood-pbc8", "Blood smear differential (PBC, 8 classes)")
    assert old.signed_by == ("Ana",) and old.signed_logins == ("ana",) and old.method == "quick"
    assert SiteProvenance.from_dict(old.to_dict()) == old


# --- one fact, one place -------------------------------------------------------------------------------

def _python_files() -> list[Path]:
    return [p for folder in ("desktop", "trainer", "scripts") for p in sorted((ROOT / folder).rglob("*.py"))]


def _mpp_statements(tree: ast.AST) -> list[int]:
    """Lines that state IDC's scale: a name like IDC_MPP assigned, or an mpp given the number 4."""
    def literal(node) -> bool:
        return isinstance(node, ast.Constant) and not isinstance(node.value, bool) and node.value == 4

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            if any("IDC" in n and "MPP" in n for n in names) or (any("mpp" in n.lower() for n in names)
                                                                  and literal(node.value)):
                lines.append(node.lineno)
        elif isinstance(node, ast.Dict):
            lines += [v.lineno for k, v in zip(node.keys, node.values)
                      if isinstance(k, ast.Constant) and k.value == "mpp" and literal(v)]
        elif isinstance(node, ast.keyword) and node.arg == "mpp" and literal(node.value):
            lines.append(node.value.lineno)
    return lines


def test_idc_mpp_is_stated_in_one_place():
    found = [f"{path.relative_to(ROOT)}:{line}" for path in _python_files()
             for line in _mpp_statements(ast.parse(path.read_text(encoding="utf-8")))]
    assert {f.split(":")[0] for f in found} == {"desktop/core/inference/contract.py"}, found
    assert IDC_MPP == 4.0  # 40x scans (0.25 µm/px) shown at 2.5x


def test_the_contract_imports_neither_tensorflow_nor_qt_nor_the_layers_above():
    tree = ast.parse((ROOT / "desktop/core/inference/contract.py").read_text(encoding="utf-8"))
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in modules if m and m.split(".")[0] in ("tensorflow", "keras", "PySide6", "onnx")}
    assert not {m for m in modules if m and m.startswith(("desktop.core.lab", "desktop.core.records",
                                                          "desktop.core.report"))}
