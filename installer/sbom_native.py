"""The components of the native parts the bundle carries (the table of sbom_parts.py), each with what it compiles
in, its version as its probe read it and the bundle files it covers; OpenCV's from its build summary, the licence
texts its build installs and the fonts in cv2. A version no probe finds stops the build (ProbeError)."""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path

from sbom_bundle import matching, real
from sbom_parts import CV2, FONTS, NATIVE, OPENCV_PARTS, OPENSLIDE_PARTS, SLIDE, Native
from sbom_probes import Found, Probe, ProbeError, container, data_of, given, version_of


def part(name: str, version: str | None, licence: str | None, kind: str = "library", ref: str = "",
         **extra: object) -> dict:
    comp: dict = {"type": kind, "bom-ref": ref or f"native:{name}", "name": name, **extra}
    if version:
        comp["version"] = version
    if licence:
        comp["licenses"] = [{"expression": licence}]
    return comp


def evidence(locations: list[str], found: Found | None = None) -> dict:
    ev: dict = {}
    if found:
        ev["identity"] = [{"field": "version", "confidence": found.confidence, "concludedValue": found.version,
                           "methods": [{"technique": found.technique, "confidence": found.confidence,
                                        "value": found.detail}]}]
    ev["occurrences"] = [{"location": loc} for loc in sorted(locations)]
    return ev


@dataclass
class Assembly:
    """The bundle's files, the versions read so far (by component name), and the components whose version could not
    be read."""
    files: dict[str, Path]
    known: dict[str, str]
    missing: list[str]

    def make(self, native: Native, ref: str, files: dict[str, Path] | None = None) -> dict | None:
        """The component of a native part the bundle carries (None where none of its files is there)."""
        files = matching(self.files, native.files) if files is None else files
        if not files:
            return None
        found = native.probe(real(files), self.known)
        if not found:
            self.missing.append(f"{ref} ({', '.join(sorted(files))})")
        extra = {"description": native.description} if native.description else {}
        return part(native.name, found.version if found else None, native.licence, native.kind, ref,
                    **extra, evidence=evidence(list(files), found))


def add(parent: dict | None, child: dict | None) -> None:
    if parent is not None and child is not None:
        parent.setdefault("components", []).append(child)


def native_parts(files: dict[str, Path], opencv_build: Path | None) -> list[dict]:
    """The native components the bundle carries, each with what it compiles in; ProbeError names every version that
    could not be read."""
    made = Assembly(files, {}, [])
    tops: dict[str, dict] = {}
    for native in NATIVE:
        if native.parent:
            parent = tops.get(f"native:{native.parent}")
            add(parent, made.make(native, f"{native.parent}/{native.name}") if parent else None)
            continue
        ref = f"native:{native.origin}/{native.name}" if native.origin else f"native:{native.name}"
        comp = made.make(native, ref)
        if comp:
            tops[ref] = comp
            if not native.origin:
                made.known[native.name] = comp.get("version", "")
    for comp in openslide_parts(made):
        add(tops.get("native:openslide"), comp)
    opencv = opencv_part(made, opencv_build)
    if made.missing:
        raise ProbeError("no version found in the bundle for: " + "; ".join(made.missing))
    return list(tops.values()) + ([opencv] if opencv else [])


def openslide_parts(made: Assembly) -> list[dict]:
    """What libopenslide.so.1 links in: the folders of openslide-bin's licence texts name them."""
    files = matching(made.files, SLIDE)
    if not files:
        return []
    dist = distribution("openslide-bin")
    names = sorted({f.parts[-2] for f in dist.files or [] if "licenses/licenses/" in f.as_posix()} - {"OpenSlide"})
    unknown = [n for n in names if n not in OPENSLIDE_PARTS]
    if unknown:
        raise ProbeError(f"openslide-bin {dist.version} links in {', '.join(unknown)} (its licenses/licenses/ "
                         f"folders): add them to OPENSLIDE_PARTS in installer/sbom_parts.py")
    natives = [Native(n, OPENSLIDE_PARTS[n][0], SLIDE, OPENSLIDE_PARTS[n][1]) for n in names]
    return [c for native in natives if (c := made.make(native, f"openslide/{native.name}", files))]


# ---------------------------------------------------------------------------------------------------------------
# OpenCV


def build_summary(binary: list[Path], opencv_build: Path | None) -> str:
    """OpenCV's build summary: getBuildInformation()'s text in cv2 (always compiled in), else configure.log."""
    for path in binary:
        data = data_of(path)
        start = data.find(b"General configuration for OpenCV")
        if start >= 0:
            return data[start:data.index(b"\0", start)].decode(errors="replace")
    log = opencv_build / "configure.log" if opencv_build else None
    return log.read_text(encoding="utf-8", errors="replace") if log and log.exists() else ""


def summary_line(summary: str, label: str) -> str | None:
    """The value of a line of the summary; CMake's log prefixes each line with '-- '."""
    match = re.search(rf"^(?:--)?\s*{re.escape(label)}:[ \t]+(\S.*)$", summary, re.MULTILINE | re.IGNORECASE)
    return match.group(1).strip() if match else None


def codec_versions(summary: str) -> dict[str, str | None]:
    """Version of each part OpenCV builds from its 3rdparty/ ('JPEG: build-libjpeg-turbo (ver 3.1.2-70)',
    'TIFF: build (ver 42 - 4.7.2)', 'HarfBuzz: build (14.2.1)'); None where the summary names none, or names a
    library of the system."""
    found: dict[str, str | None] = {}
    for name, (_, label) in OPENCV_PARTS.items():
        line = summary_line(summary, label) if label else None
        versions = re.findall(r"\d+(?:\.\d+)+", line.rsplit("(", 1)[-1]) if line and line.startswith("build") else []
        found[name] = versions[-1] if versions else None
    return found


def licensed_parts(opencv_build: Path | None) -> set[str]:
    """The parts OpenCV's build installed a licence text for (licenses/3rdparty/<part>-<file>); 'fonts' for the
    fonts' texts."""
    folder = opencv_build / "licenses" / "3rdparty" if opencv_build else None
    names = sorted(p.name for p in folder.iterdir()) if folder and folder.is_dir() else []
    parts = {next((key for key in (*OPENCV_PARTS, "fonts") if n.lower().startswith(key.lower() + "-")), n) for n in names}
    unknown = sorted(parts - set(OPENCV_PARTS) - {"fonts"})
    if unknown:
        raise ProbeError(f"OpenCV's build installs the licence texts {', '.join(unknown)} ({folder}) of parts this "
                         f"SBOM does not list: add them to OPENCV_PARTS in installer/sbom_parts.py")
    return parts


def fonts(binary: list[Path]) -> dict[str, Found | None]:
    """Fonts compiled into cv2 as gzip members (e.g. 'Rubik.ttf'), with the version their name table gives."""
    found: dict[str, Found | None] = {}
    for path in binary:
        data = data_of(path)
        for match in re.finditer(rb"\x1f\x8b\x08\x08.{6}([\w-]+)\.[ot]tf\x00", data, re.DOTALL):
            version = font_version(zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[match.end():]))
            name = match.group(1).decode()
            found[name] = Found(version, "binary-analysis", f"name table of {name} in {path.name}") if version else None
    return found


def font_version(font: bytes) -> str | None:
    """The number in 'Version 2.200' (name ID 5) of a TrueType/OpenType font's name table."""
    count, = struct.unpack_from(">H", font, 4)
    tables = dict(struct.unpack_from(">4s4xI4x", font, 12 + 16 * i) for i in range(count))
    if b"name" not in tables:
        return None
    at = tables[b"name"]
    _, records, strings = struct.unpack_from(">HHH", font, at)
    for r in range(records):
        platform, _, _, name_id, length, offset = struct.unpack_from(">6H", font, at + 6 + 12 * r)
        if name_id == 5:
            raw = font[at + strings + offset:at + strings + offset + length]
            match = re.search(r"\d+(?:\.\d+)+", raw.decode("utf-16-be" if platform in (0, 3) else "latin-1"))
            return match.group() if match else None
    return None


def opencv_probe(name: str, codecs: dict[str, str | None]) -> Probe:
    """A codec's version is in the build summary (a codec without one there is an error); SoftFloat and dlpack do not
    record theirs."""
    label = OPENCV_PARTS[name][1]
    if codecs[name]:
        return given(Found(codecs[name], "binary-analysis", f"'{label}:' line of OpenCV's build summary"))
    return given(None) if label else container("opencv", b"dlpack" if name == "dlpack" else None)


def opencv_part(made: Assembly, opencv_build: Path | None) -> dict | None:
    """OpenCV (cv2, built by build_opencv.sh), with the codecs, HarfBuzz, dlpack and fonts it compiles in."""
    files = matching(made.files, CV2)
    if not files and opencv_build:
        raise ProbeError(f"no cv2 extension module in the bundle ({' or '.join(CV2)}), though {opencv_build} built one")
    if not files:
        return None
    summary = build_summary(real(files), opencv_build)
    number = re.search(r"General configuration for OpenCV (\d+(?:\.\d+)+)", summary)
    found = Found(number.group(1), "binary-analysis", "getBuildInformation() text of cv2") if number else None
    made.known["opencv"] = found.version if found else ""
    source = f"opencv-python-headless {version_of('opencv-python-headless')}"
    comp = made.make(Native("opencv", "Apache-2.0", CV2, given(found), description=f"core, imgproc, imgcodecs built "
                            f"from the {source} source by build_opencv.sh"), "native:opencv", files)
    codecs, licensed, compiled = codec_versions(summary), licensed_parts(opencv_build), fonts(real(files))
    for name in sorted((licensed - {"fonts"}) | {n for n, v in codecs.items() if v}):
        add(comp, made.make(Native(name, OPENCV_PARTS[name][0], CV2, opencv_probe(name, codecs)), f"opencv/{name}", files))
    if "fonts" in licensed and not compiled:
        raise ProbeError(f"OpenCV's build installs a font's licence text, but no font was found in {', '.join(files)}")
    for font, version in sorted(compiled.items()):
        if font not in FONTS:
            raise ProbeError(f"cv2 compiles in the font {font}: add its licence to FONTS in installer/sbom_parts.py")
        add(comp, made.make(Native(font, FONTS[font], CV2, given(version), kind="data",
                                   description="font compiled in for putText"), f"opencv/{font}", files))
    return comp
