"""The report as a FHIR R4B Bundle (collection) for the laboratory information system, built and
validated with fhir.resources: a DiagnosticReport (status preliminary / final, specimen,
performer, results, conclusion), one Observation per result (code, UCUM quantity, reference
range, interpretation), the model as a Device, and the Specimen, Patient and Practitioners."""

from __future__ import annotations

import uuid

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.specimen import Specimen

from desktop.core.errors import SlideTallyError
from desktop.core.report.assay_report import AssayReport, Result
from desktop.core.report.codes import LOCAL_SYSTEM

UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
REPORT_CATEGORY = "http://terminology.hl7.org/CodeSystem/v2-0074"
ID_SYSTEM = "urn:slidetally:id"  # specimen, patient and model identifiers as the lab entered them
SEAL_SYSTEM = "urn:slidetally:seal"  # the record's sign-off seal (SHA-256): the anchor audit-check --against reads


class FhirError(SlideTallyError):
    """The Bundle could not be made valid; nothing was written."""


def _ref(url: str) -> dict:
    return {"reference": url}


def _coding(result: Result) -> dict:
    code = result.code
    coding = ({"system": code.system, "code": code.code, "display": code.display} if code is not None
              else {"system": LOCAL_SYSTEM, "code": result.key, "display": result.label})
    return {"coding": [coding], "text": result.label}


def _quantity(value: float, result: Result) -> dict:
    return {"value": value, "unit": result.unit.symbol, "system": UCUM, "code": result.unit.ucum}


def _observation(result: Result, report: AssayReport, refs: dict[str, str]) -> Observation:
    data: dict = {
        "status": report.status,
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
        "code": _coding(result),
        "valueQuantity": _quantity(result.value, result),
        "device": _ref(refs["device"]),
        "specimen": _ref(refs["specimen"]),
    }
    if "patient" in refs:
        data["subject"] = _ref(refs["patient"])
    if "performer" in refs:
        data["performer"] = [_ref(refs["performer"])]
    if report.record.created_at:
        data["effectiveDateTime"] = report.record.created_at
    if result.interval is not None:
        low, high = result.interval
        data["referenceRange"] = [{"low": _quantity(low, result), "high": _quantity(high, result)}]
        code = result.flag or "N"
        data["interpretation"] = [{"coding": [{"system": INTERPRETATION, "code": code}]}]
    if result.ci is not None:
        # R4B has no element for a value's uncertainty; the interval travels as the observation's note
        data["note"] = [{"text": f"95% confidence interval {result.ci_text()} {result.unit.symbol}"}]
    return Observation(**data)


def _conclusion(report: AssayReport) -> str:
    parts = [f"{r.label}: {r.text()} {r.unit.symbol}{' ' + r.flag if r.flag else ''}"
             + (f" (95% CI {r.ci_text()} {r.unit.symbol})" if r.ci else "") for r in report.results]
    text = "; ".join(parts) + "."
    if report.warnings:
        text += " " + " ".join(report.warnings)
    if report.changes_note:
        text += f" {report.changes_note}."
    if report.corrected:
        text += f" Corrected result: {'; '.join(report.corrections) or 'no call changed'}."
    if report.slide is not None:
        text += " Heat map of the slide's calls: see the PDF report."
    return text


def fhir_bundle(report: AssayReport) -> Bundle:
    """The validated Bundle; `fhir_json` gives its text."""
    record = report.record
    urls = {name: f"urn:uuid:{uuid.uuid4()}" for name in ("device", "specimen", "patient", "performer", "verifier",
                                                            "report")}
    entries: list[tuple[str, object]] = []
    refs = {"device": urls["device"], "specimen": urls["specimen"]}
    try:
        m = report.model
        entries.append((urls["device"], Device(
            identifier=[{"system": f"{ID_SYSTEM}:model-sha256", "value": m.sha256}],
            deviceName=[{"name": m.display_name, "type": "model-name"}, {"name": m.key, "type": "other"}],
            version=[{"value": m.version}, {"type": {"text": "SlideTally"}, "value": report.app_version}],
            type={"text": "CNN image classifier (pre-classification; final calls by the technician)"})))
        if record.patient_id:
            refs["patient"] = urls["patient"]
            patient = Patient(identifier=[{"system": f"{ID_SYSTEM}:patient", "value": record.patient_id}])
            entries.append((urls["patient"], patient))
        specimen: dict = {"accessionIdentifier": {"system": f"{ID_SYSTEM}:specimen",
                                                  "value": record.specimen_id or record.folder},
                          "type": {"text": "Blood smear" if report.blood else "Tissue section"}}
        if "patient" in refs:
            specimen["subject"] = _ref(refs["patient"])
        entries.append((urls["specimen"], Specimen(**specimen)))
        if report.final and record.signed_by:
            refs["performer"] = urls["performer"]
            entries.append((urls["performer"], Practitioner(name=[{"text": record.signed_by}])))
        observations = [(f"urn:uuid:{uuid.uuid4()}", _observation(r, report, refs)) for r in report.results]
        diagnostic: dict = {
            "status": report.status,
            "category": [{"coding": [{"system": REPORT_CATEGORY, "code": "HM" if report.blood else "SP"}]}],
            "code": ({"coding": [{"system": report.panel.system, "code": report.panel.code,
                                  "display": report.panel.display}], "text": m.display_name} if report.panel
                     else {"text": m.display_name}),
            "identifier": [{"system": f"{ID_SYSTEM}:specimen", "value": record.specimen_id or record.folder},
                           *([{"system": SEAL_SYSTEM, "value": record.seal}] if record.seal else [])],
            "specimen": [_ref(refs["specimen"])],
            "result": [_ref(url) for url, _ in observations],
            "conclusion": _conclusion(report),
        }
        if "patient" in refs:
            diagnostic["subject"] = _ref(refs["patient"])
        if "performer" in refs:
            diagnostic["performer"] = [_ref(refs["performer"])]
        if record.verified_by:
            entries.append((urls["verifier"], Practitioner(name=[{"text": record.verified_by}])))
            diagnostic["resultsInterpreter"] = [_ref(urls["verifier"])]
        if record.created_at:
            diagnostic["effectiveDateTime"] = record.created_at
        issued = record.signed_at if report.final else report.generated_at
        if issued:
            diagnostic["issued"] = issued
        entries = [(urls["report"], DiagnosticReport(**diagnostic)), *entries, *observations]
        return Bundle(type="collection", timestamp=report.generated_at or None,
                      entry=[{"fullUrl": url, "resource": resource} for url, resource in entries])
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise FhirError(f"The FHIR Bundle could not be built: {exc}") from exc


def fhir_json(report: AssayReport) -> str:
    return fhir_bundle(report).model_dump_json(indent=2, exclude_none=True) + "\n"
