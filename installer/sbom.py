"""Complete the CycloneDX bill of materials of the bundle: the Python packages as cyclonedx-py wrote them from the
build venv (kept only where the bundle carries them), plus the parts no Python metadata describes: CPython, Qt, OpenCV,
ONNX Runtime, OpenSlide, the libraries of the Pillow wheel if a spec change brings them back, and what each of them
compiles in.

Every native part is read from the bundle itself. Its version comes from its own files (a version string, a source
path or a compiler note in the binary, a version function called through ctypes, its file name) or from its wheel's
metadata, never from a table of numbers, so a lock update cannot leave one stale; a probe that finds nothing stops
the build. Each component lists the bundle files it covers (evidence.occurrences, paths from the bundle's root);
`--check` fails when a shared library of the bundle is named by no component, or a component has no version.

This file assembles the SBOM and runs the check; the native parts are listed in sbom_parts.py, their versions read by
sbom_probes.py and made into components by sbom_native.py; sbom_bundle.py reads the bundle's files.

Usage: sbom.py BASE_JSON OUT_JSON OPENCV_BUILD_DIR BUNDLE_DIR   (BASE_JSON: cyclonedx-py's SBOM of the build venv)
       sbom.py --check BUNDLE_DIR SBOM_JSON
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from importlib.metadata import distribution
from pathlib import Path

import bundle_licences as bl
from packaging.utils import canonicalize_name
from sbom_bundle import bundle_files, matching, pyz_modules, shared_libraries
from sbom_native import evidence, native_parts, part
from sbom_parts import IN, PROGRAM, SBOM_FIELDS, WHEEL_EMBEDS
from sbom_probes import Found, ProbeError, wheel_sbom

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------------------------
# Python distributions


def tops_of(name: str) -> tuple[set[str], list[str]]:
    """A distribution's top-level folders and modules, and the paths of its files (its RECORD)."""
    files = [f.as_posix() for f in distribution(name).files or []]
    tops = {f.split("/")[0] if "/" in f else f.split(".")[0] for f in files}
    tops = {t for t in tops if not t.endswith((".dist-info", ".data")) and t not in ("..", "__pycache__", "bin")}
    return tops, files


def python_evidence(name: str, files: dict[str, Path], folders: set[str], modules: set[str]) -> list[str]:
    """Where the bundle carries a distribution: the program (its modules in the PYZ archive), its folders under
    _internal/, and each of its shared libraries (by its RECORD); empty where the bundle does not carry it."""
    tops, record = tops_of(name)
    found = [PROGRAM] if tops & modules else []
    found += [IN + t for t in sorted(tops & folders)]
    found += [IN + f for f in record if re.match(r"lib.*\.so", f.rsplit("/", 1)[-1]) and IN + f in files]
    return found


def carried(names: list[str], bundle: Path) -> list[str]:
    """The distributions of `names` the bundle carries (copyright.py lists only those, as this SBOM does)."""
    files = bundle_files(bundle)
    modules = pyz_modules(bundle / PROGRAM)
    folders = {rel.split("/")[1] for rel in files if rel.startswith(IN) and rel.count("/") > 1}
    return [name for name in names if python_evidence(name, files, folders, modules)]


def python_parts(base: dict, bundle: Path, files: dict[str, Path]) -> list[dict]:
    """cyclonedx-py's components of the distributions the app runs with, where the bundle carries them."""
    wanted = {canonicalize_name(n) for n in bl.runtime_distributions(ROOT / "pyproject.toml") + list(bl.BUILD_BUNDLED)}
    modules = pyz_modules(bundle / PROGRAM)
    folders = {rel.split("/")[1] for rel in files if rel.startswith(IN) and rel.count("/") > 1}
    kept = []
    for comp in base.get("components", []):
        key = canonicalize_name(comp["name"])
        where = python_evidence(comp["name"], files, folders, modules) if key in wanted else []
        if not where:
            continue  # not a runtime dependency, or one the bundle does not carry (e.g. flatbuffers, onnxruntime's)
        if not comp.get("licenses") and key in bl.LICENCE:  # metadata that names no licence: what its text says
            comp["licenses"] = [{"expression": bl.LICENCE[key]}]
        comp["evidence"] = evidence(where)
        for embed in wheel_embeds(comp, files):
            comp.setdefault("components", []).append(embed)
        kept.append(comp)
    return kept


def wheel_embeds(comp: dict, files: dict[str, Path]) -> list[dict]:
    """What the wheel's SBOM says its extension module compiles in, where the bundle carries that module."""
    pattern = WHEEL_EMBEDS.get(canonicalize_name(comp["name"]))
    where = list(matching(files, (pattern,))) if pattern else []
    return [dict({k: v for k, v in embed.items() if k in SBOM_FIELDS}, **{"bom-ref": f"{comp['name']}/{embed['name']}"},
                 evidence=evidence(where, Found(embed["version"], "manifest-analysis", f"{sbom} of the {comp['name']} wheel")))
            for sbom, embed in (wheel_sbom(comp["name"]) if where else []) if embed.get("version")]


def cpython_pedigree(comp: dict) -> None:
    """The bundle's CPython is Debian's python3.11 source built by build_python.sh, where the version read from
    libpython is the one its lock names (installer/python-source.lock)."""
    lock = (ROOT / "installer" / "python-source.lock").read_text(encoding="utf-8")
    debian = re.search(r"^# version: (\S+)", lock, re.MULTILINE)
    if debian and debian.group(1).split("-")[0] == comp.get("version"):
        comp["purl"] = f"pkg:deb/debian/python3.11@{debian.group(1).replace('+', '%2B')}?arch=source"
        comp["description"] += (f"; Debian's python3.11 {debian.group(1)} source (installer/build_python.sh), "
                                f"linking the system's expat, SQLite, OpenSSL, libffi, zlib, bzip2 and xz (not bundled)")
    else:
        comp["purl"] = f"pkg:generic/cpython@{comp.get('version')}"


def complete(base: dict, opencv_build: Path | None, version: str, bundle: Path) -> dict:
    files = bundle_files(bundle)
    python = python_parts(base, bundle, files)
    native = native_parts(files, opencv_build)
    for comp in native:
        if comp["name"] == "cpython":
            cpython_pedigree(comp)
    bom = dict(base)
    bom["metadata"] = dict(base.get("metadata", {}),
                           component=part("slidetally", version, "MIT", "application", purl=f"pkg:generic/slidetally@{version}"))
    bom["components"] = python + native
    refs = {c["bom-ref"] for c in python}
    bom["dependencies"] = [dict(d, dependsOn=[r for r in d.get("dependsOn", []) if r in refs])
                           for d in base.get("dependencies", []) if d.get("ref") in refs]
    return bom


# ---------------------------------------------------------------------------------------------------------------
# The check


def walk(components: list[dict]) -> Iterator[dict]:
    for comp in components:
        yield comp
        yield from walk(comp.get("components", []))



def check(bundle: Path, bom: dict) -> list[str]:
    """What the SBOM misses: each shared library of the bundle no component names (a link counts as named when its
    target is), each component without a version."""
    comps = list(walk(bom.get("components", [])))
    named = {o["location"] for c in comps for o in c.get("evidence", {}).get("occurrences", [])}
    files = bundle_files(bundle)
    root = bundle.resolve()
    problems = []
    for rel in shared_libraries(files):
        target = files[rel].resolve()
        inside = target.relative_to(root).as_posix() if target.is_relative_to(root) else None
        if rel not in named and inside not in named:
            problems.append(f"{rel}: no component names it")
    problems += [f"{c.get('bom-ref', c['name'])}: no version" for c in comps if not c.get("version")]
    return problems


# ---------------------------------------------------------------------------------------------------------------


def main(base: str, out: str, opencv_build: str, bundle: str) -> None:
    version = __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    try:
        bom = complete(json.loads(Path(base).read_text(encoding="utf-8")), Path(opencv_build) if opencv_build else None,
                       version, Path(bundle))
    except ProbeError as err:
        sys.exit(f"sbom: {err}")
    Path(out).write_text(json.dumps(bom, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"sbom: {len(bom['components'])} components written to {out}")


def main_check(bundle: str, sbom: str) -> None:
    problems = check(Path(bundle), json.loads(Path(sbom).read_text(encoding="utf-8")))
    for problem in problems:
        print(f"sbom --check: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"sbom --check: every shared library of {bundle} is named in {sbom}, every component has a version")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"] and len(sys.argv) == 4:
        main_check(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] != "--check":
        main(*sys.argv[1:])
    else:
        sys.exit(__doc__)
