"""The codes each reported result is sent under (LOINC where one fits, a local code where none
does): one table, which a laboratory may override with a small JSON file, since labs map codes
differently.

Why these LOINC codes. A SlideTally differential is counted on a smear's images and every
counted cell carries the technician's final call. LOINC has no method for image-based
(digital morphology) counting: "Automated count" codes (770-8, 736-9, 58413-6, 71695-1 …) mean a
haematology analyser's count, and "Manual count" codes (23761-0, 744-3 …) a microscope count.
LOINC's own Manual Differential panel (24318-8) reports smear differentials with the method-less
"/100 leukocytes in Blood" terms, so those are sent here; a lab that files CellaVision-type
results under the "Manual count" codes overrides them (see `load_codes`).
The IDC fraction has no LOINC code: it goes out under a local code in `LOCAL_SYSTEM`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from desktop.core.errors import SlideTallyError

LOINC = "http://loinc.org"
LOCAL_SYSTEM = "urn:slidetally:code"  # FHIR system of SlideTally's local codes
HL7_LOCAL = "99SLT"  # HL7 v2 name of that system (table 0396: 99zzz is a local coding system)
CODES_FILE = "lis_codes.json"  # in the user data folder: the lab's overrides


class CodeTableError(SlideTallyError):
    """The lab's code file cannot be used; the message says which entry and why."""


@dataclass(frozen=True)
class ResultCode:
    system: str
    code: str
    display: str

    @property
    def hl7_system(self) -> str:
        return "LN" if self.system == LOINC else HL7_LOCAL


def _loinc(code: str, display: str) -> ResultCode:
    return ResultCode(LOINC, code, display)


def _local(code: str, display: str) -> ResultCode:
    return ResultCode(LOCAL_SYSTEM, code, display)


# Keyed by class key (the reported value of that class) or by a result name.
DEFAULT_CODES: dict[str, ResultCode] = {
    "neutrophil": _loinc("26511-6", "Neutrophils/100 leukocytes in Blood"),
    "lymphocyte": _loinc("26478-8", "Lymphocytes/100 leukocytes in Blood"),
    "monocyte": _loinc("26485-3", "Monocytes/100 leukocytes in Blood"),
    "eosinophil": _loinc("26450-7", "Eosinophils/100 leukocytes in Blood"),
    "basophil": _loinc("30180-4", "Basophils/100 leukocytes in Blood"),
    "ig": _loinc("38518-7", "Immature granulocytes/100 leukocytes in Blood"),
    # NRBC per 100 WBC, whatever the class is called: found through its group (see `code_for`)
    "group:nrbc": _loinc("19048-8", "Nucleated erythrocytes/100 leukocytes [Ratio] in Blood"),
    "wbc_counted": _local("wbc-counted", "White cells counted in the differential"),
    "platelets_counted": _local("platelets-counted", "Platelets counted on the images (counted apart)"),
    "idc_fraction": _local("idc-patch-fraction", "IDC patches / classified patches, image-based (breast tissue)"),
    "panel:blood-differential": _loinc("24318-8", "Manual differential panel - Blood"),
    "panel:idc-patch": _local("idc-slide", "Invasive ductal carcinoma patch fraction of a slide"),
}


def code_for(codes: dict[str, ResultCode], key: str, group: str = "") -> ResultCode | None:
    """The code of a class or result: its own entry first, then its group's (NRBC)."""
    return codes.get(key) or (codes.get(f"group:{group}") if group else None)


def load_codes(path: Path | None = None) -> dict[str, ResultCode]:
    """The default table with the lab's overrides from `path` (default: lis_codes.json in the
    user data folder, if there). Format: {"neutrophil": {"code": "23761-0", "display": "…",
    "system": "http://loinc.org"}, …}; "system" defaults to LOINC."""
    codes = dict(DEFAULT_CODES)
    if path is None:
        from desktop.core.resources import user_data_dir

        try:
            path = user_data_dir() / CODES_FILE
        except OSError:
            return codes
        if not path.is_file():
            return codes
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CodeTableError(f"Cannot read the lab's code file {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CodeTableError(f"The lab's code file {path} is not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise CodeTableError(f"The lab's code file {path} must hold one object: result name -> code.")
    for key, entry in data.items():
        if not isinstance(entry, dict) or not str(entry.get("code", "")).strip():
            raise CodeTableError(f"In {path}, {key!r} needs a \"code\" (and may give \"display\" and \"system\").")
        system = str(entry.get("system", LOINC)).strip() or LOINC
        display = str(entry.get("display", "")).strip() or (codes[key].display if key in codes else key)
        codes[key] = ResultCode(system, str(entry["code"]).strip(), display)
    return codes
