"""Handing a report to the laboratory information system: HL7 and FHIR files written atomically,
by path or into the lab's drop folder (how most LIS interfaces receive files) under a name the
LIS can match: specimen, status and time."""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path

from desktop.core.atomic import write_atomically
from desktop.core.errors import ActionRefused, ExportError
from desktop.core.names import readable
from desktop.core.records.session import Session
from desktop.core.report.assay_report import AssayReport
from desktop.core.report.codes import ResultCode
from desktop.core.report.session_report import session_report
from desktop.outlets.fhir import fhir_json
from desktop.outlets.hl7 import hl7_message

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def write_hl7(report: AssayReport, path: Path) -> Path:
    write_atomically(Path(path), hl7_message(report), encoding="utf-8")
    return Path(path)


def write_fhir(report: AssayReport, path: Path) -> Path:
    write_atomically(Path(path), fhir_json(report), encoding="utf-8")
    return Path(path)


def drop_stem(report: AssayReport) -> str:
    """'B-1187_final_20261125T103000' — one file pair per specimen and hand-off, never overwritten by another."""
    specimen = _UNSAFE.sub("_", report.record.specimen_id or Path(report.record.folder).name).strip("_") or "specimen"
    when = report.record.signed_at if report.final else report.generated_at
    try:
        stamp = dt.datetime.fromisoformat(when).strftime("%Y%m%dT%H%M%S")
    except ValueError:
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    return f"{specimen}_{report.status}_{stamp}"


def write_lis_drop(report: AssayReport, folder: Path) -> tuple[Path, Path]:
    """The HL7 message and the FHIR Bundle in the LIS drop folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"The LIS export folder {readable(str(folder))} does not exist or is not reachable. "
                          "Choose it again (File → LIS export folder).")
    stem = drop_stem(report)
    return write_hl7(report, folder / f"{stem}.hl7"), write_fhir(report, folder / f"{stem}.fhir.json")


def hand_off(session: Session, folder: Path, *, operator: str, codes: dict[str, ResultCode] | None = None,
             target: int | None = None) -> tuple[Path, Path]:
    """After sign-off: the session's final report into the LIS drop folder (the GUI does this at each
    sign-off when a drop folder is set; a script may call it the same way). Preliminary results are
    never handed off."""
    if not session.signed:
        raise ActionRefused("Only a signed-off session is sent to the LIS.")
    written = write_lis_drop(session_report(session, target=target, operator=operator, codes=codes), folder)
    log.info("sent to the LIS folder %s: %s", readable(str(folder)), ", ".join(p.name for p in written))
    return written
