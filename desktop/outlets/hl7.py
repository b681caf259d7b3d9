"""The report as an HL7 v2.5.1 ORU^R01 message for the laboratory information system, built and
validated with hl7apy: MSH, PID, ORC, OBR (+ NTE per warning), one OBX per result with its code,
UCUM unit, reference range and flag, result status P until sign-off and F after."""

from __future__ import annotations

import datetime as dt
import uuid

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message

from desktop.core.errors import SlideTallyError
from desktop.core.records.domain import now
from desktop.core.records.integrity import seal_line
from desktop.core.report.assay_report import AssayReport, Result
from desktop.core.report.codes import HL7_LOCAL, ResultCode

SENDING_APPLICATION = "SlideTally"
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"), ("\r\n", "\\.br\\"),
            ("\n", "\\.br\\"), ("\r", "\\.br\\"))


class Hl7Error(SlideTallyError):
    """The message could not be made valid (a value HL7 cannot carry); nothing was written."""


def escape(text: str) -> str:
    """Free text as one HL7 component: its delimiters escaped (\\F\\, \\S\\ …), line breaks as \\.br\\."""
    for raw, escaped in _ESCAPES:
        text = text.replace(raw, escaped)
    return text


def hl7_time(iso: str) -> str:
    """'2026-11-25T10:30:00+01:00' -> '20261125103000+0100' ('' stays '')."""
    if not iso:
        return ""
    when = dt.datetime.fromisoformat(iso)
    return when.strftime("%Y%m%d%H%M%S") + (when.strftime("%z") if when.tzinfo else "")


def _coded(code: ResultCode | None, fallback: Result) -> str:
    if code is None:  # a model's class the table has no entry for: sent under its key, locally
        return f"{escape(fallback.key)}^{escape(fallback.label)}^{HL7_LOCAL}"
    return f"{escape(code.code)}^{escape(code.display)}^{code.hl7_system}"


def _range(result: Result) -> str:
    if result.interval is None:
        return ""
    low, high = result.interval
    return f"{low:g}-{high:g}"


def hl7_message(report: AssayReport, *, facility: str = "LAB", receiver: str = "LIS", control_id: str = "") -> str:
    """The ORU^R01 message (segments separated by CR, as HL7 v2 requires)."""
    # HL7 table 0123/0085: P preliminary, F final, C a correction of a final result
    record, status = report.record, ("C" if report.corrected else "F") if report.final else "P"
    observed = hl7_time(record.created_at or report.generated_at)
    reported = hl7_time(record.signed_at if report.final else report.generated_at)
    accession = f"{escape(record.specimen_id or record.folder)}^{SENDING_APPLICATION}"
    try:
        msg = Message("ORU_R01", version="2.5.1", validation_level=VALIDATION_LEVEL.STRICT)
        _header(msg.msh, facility, receiver, reported, control_id)
        result_group = msg.add_group("ORU_R01_PATIENT_RESULT")
        _patient(result_group.add_group("ORU_R01_PATIENT").pid, report)
        order = result_group.add_group("ORU_R01_ORDER_OBSERVATION")
        _order(order, report, accession, observed, reported, status)
        for i, text in enumerate(_notes(report), 1):
            nte = order.add_segment("NTE")
            nte.nte_1 = str(i)
            nte.nte_3 = escape(text)
        for i, result in enumerate(report.results, 1):
            _observation(order.add_group("ORU_R01_OBSERVATION").obx, i, result, report, status, observed)
        msg.validate()
    except Exception as exc:  # hl7apy's own error types: one sentence for the technician
        raise Hl7Error(f"The HL7 message could not be built: {exc}") from exc
    return msg.to_er7() + "\r"


def _header(msh, facility: str, receiver: str, reported: str, control_id: str) -> None:
    """MSH: who sends to whom, when, and the message's type, ID and encoding."""
    msh.msh_3 = SENDING_APPLICATION
    msh.msh_4 = escape(facility)
    msh.msh_5 = escape(receiver)
    msh.msh_7 = reported or hl7_time(now())
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = control_id or uuid.uuid4().hex[:20]
    msh.msh_11 = "P"
    msh.msh_12 = "2.5.1"
    msh.msh_18 = "UNICODE UTF-8"


def _patient(pid, report: AssayReport) -> None:
    """PID: the patient ID only."""
    pid.pid_1 = "1"
    # Never the specimen ID in place of a missing patient ID: the LIS would file it as a patient.
    pid.pid_3 = f"{escape(report.record.patient_id or 'UNKNOWN')}^^^{SENDING_APPLICATION}^PI"
    pid.pid_5 = "UNKNOWN"  # SlideTally holds no names: the LIS matches on the IDs


def _order(order, report: AssayReport, accession: str, observed: str, reported: str, status: str) -> None:
    """ORC and OBR: the specimen's order, the panel, when it was observed and reported, its status."""
    order.orc.orc_1 = "RE"
    order.orc.orc_3 = accession
    order.orc.orc_5 = "CM" if report.final else "IP"
    order.obr.obr_1 = "1"
    order.obr.obr_3 = accession
    order.obr.obr_4 = _coded(report.panel, Result(report.task, report.model.display_name, None, None))
    if observed:
        order.obr.obr_7 = observed
    if reported:
        order.obr.obr_22 = reported
    order.obr.obr_25 = status


def _notes(report: AssayReport) -> list[str]:
    """The NTE lines: warnings, changes, the model, reopenings, corrections, verification, seal, slide notes."""
    record = report.record
    notes = [*report.warnings, *([report.changes_note] if report.changes_note else []),
             f"Model {report.model.key} v{report.model.version} (SHA-256 {report.model.sha256}); "
             f"SlideTally {report.app_version}. Pre-classified by a CNN, every counted call is the technician's.",
             *(f"Reopened {o.at} by {o.by}: {o.reason}" for o in report.reopens),
             *([f"Corrected result: {'; '.join(report.corrections) or 'no call changed'}"] if report.corrected else [])]
    if record.verified_by:
        notes.append(f"Verified {record.verified_at} by {record.verified_by}")
    if record.seal:
        notes.append(seal_line(record.seal))
    if report.slide is not None and report.fraction_detail():
        notes.append(f"IDC fraction: {report.fraction_detail()}.")
    if report.slide is not None:
        notes.append("Heat map of the slide's calls: see the PDF report.")
    return notes


def _observation(obx, i: int, result: Result, report: AssayReport, status: str, observed: str) -> None:
    """One OBX: the result's code, value, UCUM unit, reference range and flag, status, and who signed."""
    obx.obx_1 = str(i)
    obx.obx_2 = "NM"
    obx.obx_3 = _coded(result.code, result)
    obx.obx_5 = result.text()
    obx.obx_6 = f"{escape(result.unit.ucum)}^{escape(result.unit.text)}^UCUM"
    if result.interval is not None:
        obx.obx_7 = _range(result)
        obx.obx_8 = result.flag or "N"
    obx.obx_11 = status
    if observed:
        obx.obx_14 = observed
    if report.final and report.record.signed_by:
        obx.obx_16 = f"^{escape(report.record.signed_by)}"
    obx.obx_18 = f"{escape(report.model.key)}-{escape(report.model.version)}^{SENDING_APPLICATION}"
