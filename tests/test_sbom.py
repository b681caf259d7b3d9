"""The bill of materials installer/sbom.py completes: CycloneDX JSON with the bundle's Python packages only, and the
native parts (CPython, Qt, OpenCV and its codecs, ONNX Runtime and what it embeds, OpenSlide)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "installer"))
import sbom

NATIVE = {"cpython", "qt", "opencv", "onnxruntime-native", "openslide", "pyinstaller-bootloader"}


def _base(tmp_path):
    """cyclonedx-py's SBOM of this venv where the generator is installed, else a hand-made one of three packages."""
    if importlib.util.find_spec("cyclonedx_py"):
        out = tmp_path / "base.json"
        subprocess.run([sys.executable, "-m", "cyclonedx_py", "environment", "--of", "JSON", "--sv", "1.6",
                        "-o", str(out), sys.executable], check=True, capture_output=True)
        return json.loads(out.read_text(encoding="utf-8"))
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
            "components": [{"type": "library", "bom-ref": f"{n}==1", "name": n, "version": "1"}
                           for n in ("numpy", "fhir.resources", "pandas")]}


def test_sbom_lists_the_bundle_and_its_native_parts(tmp_path):
    bom = sbom.complete(_base(tmp_path), None, "0.1.0")
    text = json.dumps(bom)
    names = {c["name"].lower() for c in json.loads(text)["components"]}
    assert names >= NATIVE
    assert {"numpy", "fhir.resources"} <= names and "pandas" not in names  # the trainer's tools are not bundled
    opencv = next(c for c in bom["components"] if c["name"] == "opencv")
    assert {c["name"] for c in opencv["components"]} == {"libjpeg-turbo", "libpng", "libtiff"}
    onnxruntime = next(c for c in bom["components"] if c["name"] == "onnxruntime-native")
    assert {"curl", "mbedtls"} <= {c["name"] for c in onnxruntime["components"]}
    refs = [c["bom-ref"] for c in bom["components"]] + [s["bom-ref"] for c in bom["components"]
                                                        for s in c.get("components", [])]
    assert len(refs) == len(set(refs))
    if importlib.util.find_spec("cyclonedx"):
        from cyclonedx.schema import SchemaVersion
        from cyclonedx.validation.json import JsonStrictValidator
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
