"""One AssayReport, every outlet: the summary CSV, the per-cell CSV, HL7 v2, FHIR, the PDF, the GUI
panel and the CLI all lay out the same report of a real session (the bundled blood model on the
bundled sample images), and every number they carry is the summary CSV's."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import pytest
from conftest import MODELS, ROOT, SAMPLES, make_tiny_model, shipped

from desktop.core.inference.model import Model
from desktop.core.records.session import Session
from desktop.core.report.assay_report import PER_100_WBC
from desktop.core.report.codes import LOCAL_SYSTEM, LOINC, CodeTableError, load_codes
from desktop.core.report.session_report import session_report
from desktop.outlets.csv import DECIMAL_COMMA, export_csv, summary_rows
from desktop.outlets.fhir import fhir_json
from desktop.outlets.hl7 import hl7_message

WHEN = "2026-11-25T10:30:00+01:00"


@pytest.fixture(scope="module")
def blood_session(tmp_path_factory):
    """The bundled blood samples classified by the bundled model, identified, reviewed and signed off."""
    shipped("blood-pbc8.onnx")
    data = tmp_path_factory.mktemp("data")
    session = Session.open(SAMPLES / "blood", Model(MODELS / "blood-pbc8.onnx"), data)
    session.classify()
    session.set_identity("B-1187", "P-77", "Ana Ruiz")
    session.confirm([c.file for c in session.cells() if c.needs_review], "Ana Ruiz")
    session.sign_off("Ana Ruiz")
    session.os_user = "ben"  # the second person logs in as themself
    session.verify("Ben Ode")
    yield session
    session.close()


@pytest.fixture(scope="module")
def report(blood_session):
    return session_report(blood_session, operator="Ana Ruiz", when=WHEN)


@pytest.fixture(scope="module")
def summary_csv(tmp_path_factory, report, blood_session) -> dict[str, dict[str, str]]:
    """The summary CSV's rows by item: the reference every other outlet's numbers must equal."""
    out = tmp_path_factory.mktemp("csv")
    export_csv(report, blood_session.cells(), out / "cells.csv", out / "summary.csv")
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text(encoding="utf-8-sig"))))
    return {r["item"]: r for r in rows if r["section"] in ("count", "result", "identity")}


def csv_value(summary_csv, key: str) -> float:
    return float(summary_csv[key]["value"])


# --- the report itself ---------------------------------------------------------------------------
def test_every_wbc_class_and_nrbc_per_100_wbc_carries_a_loinc_code(report):
    for line in report.classes:
        if line.group in ("wbc", "nrbc"):
            assert line.result is not None and line.result.code is not None, line.key
            assert line.result.code.system == LOINC, line.key
    nrbc = next(c for c in report.classes if c.group == "nrbc")
    assert nrbc.result.code.code == "19048-8" and nrbc.result.unit == PER_100_WBC
    assert report.result("neutrophil").code.code == "26511-6"
    assert report.panel.code == "24318-8"


def test_the_nrbc_unit_follows_the_class_group_not_its_key(tmp_path, good_folder):
    classes = json.dumps([{"key": "seg", "label": "Seg", "group": "wbc", "hotkey": "1"},
                          {"key": "lym", "label": "Lym", "group": "wbc", "hotkey": "2"},
                          {"key": "nucleated_red", "label": "NRBC", "group": "nrbc", "hotkey": "3"}])
    model = make_tiny_model(tmp_path / "m.onnx", classes=("seg", "lym", "nucleated_red"),
                            metadata_overrides={"classes": classes})
    session = Session.open(good_folder, Model(model), tmp_path / "data")
    session.classify()
    report = session_report(session, when=WHEN)
    session.close()
    line = next(c for c in report.classes if c.key == "nucleated_red")
    assert line.result.unit == PER_100_WBC and line.result.code.code == "19048-8"


def test_a_signed_off_report_is_final_and_names_who_and_when(report):
    assert report.status == "final" and report.final
    identity = {name: value for name, _label, value in report.identity()}
    assert identity["specimen_id"] == "B-1187" and identity["patient_id"] == "P-77"
    assert identity["signed_by"] == "Ana Ruiz" and identity["signed_at"] and identity["verified_by"] == "Ben Ode"
    assert identity["model_sha256"] == report.model.sha256 and len(report.model.sha256) == 64
    assert identity["app_version"]


def idc_session(tmp_path) -> Session:
    """60 patches of the bundled IDC sample slide, classified by the bundled IDC model."""
    shipped("breast-idc.onnx")
    folder = tmp_path / "slide"
    folder.mkdir()
    for path in sorted((SAMPLES / "breast-idc-9022").glob("*.png"))[:60]:
        shutil.copy(path, folder / path.name)
    session = Session.open(folder, Model(MODELS / "breast-idc.onnx"), tmp_path / "data")
    session.classify()
    return session


def test_idc_report_sends_a_local_code_and_no_blood_reference(tmp_path):
    session = idc_session(tmp_path)
    report = session_report(session, when=WHEN)
    session.close()
    fraction = report.result("idc_fraction")
    assert fraction is not None and fraction.code.system == LOCAL_SYSTEM and fraction.code.code == "idc-patch-fraction"
    assert "reference_intervals" not in report.reference_source and "Dacie" not in report.reference_source
    assert report.slide is not None and report.slide.calls.size
    message = hl7_message(report)
    assert "idc-patch-fraction^" in message and "^99SLT" in message


def test_a_missing_patient_id_is_sent_as_unknown_never_as_the_specimen_id(tmp_path):
    import hl7

    session = idc_session(tmp_path)
    session.set_identity("S-5", "", "Ana Ruiz")
    report = session_report(session, when=WHEN)
    session.close()
    pid = hl7.parse(hl7_message(report)).segment("PID")
    assert str(pid[3][0][0]) == "UNKNOWN"
    assert "S-5" not in str(pid)


def test_idc_fraction_follows_corrections_and_the_ai_figure_stays_apart(tmp_path):
    session = idc_session(tmp_path)
    before = session_report(session, when=WHEN)
    normal = [c.file for c in session.cells() if (c.final_class or c.ai_class) == "normal" and not c.needs_review]
    session.reclassify(normal[:3], "idc", "Ana Ruiz")
    after = session_report(session, when=WHEN)
    session.close()
    assert after.slide.idc == before.slide.idc + 3
    assert after.result("idc_fraction").value > before.result("idc_fraction").value
    assert after.ai_fraction == before.ai_fraction and after.ai_fraction.value is not None
    assert "idc_fraction_ai" not in hl7_message(after)  # the LIS gets the reported (final) figure only
    rows = {row[1]: row for row in summary_rows(after)}
    assert float(rows["idc_fraction_ai"][5]) == after.ai_fraction.value
    assert float(rows["idc_fraction"][5]) == after.result("idc_fraction").value


# --- CSV -------------------------------------------------------------------------------------------
def test_summary_csv_carries_the_report_numbers_with_numeric_reference_limits(report, summary_csv):
    for line in report.differential:
        row = summary_csv[line.key]
        assert float(row["value"]) == line.result.value
        assert (float(row["ref_low"]), float(row["ref_high"])) == line.result.interval
        assert row["flag"] == line.result.flag and row["code"] == line.result.code.code
        assert int(row["final_count"]) == line.final
    assert summary_csv["specimen_id"]["value"] == "B-1187"


def test_per_cell_csv_starts_with_its_header_and_pandas_reads_it_with_defaults(tmp_path, report, blood_session):
    pd = pytest.importorskip("pandas")
    export_csv(report, blood_session.cells(), tmp_path / "cells.csv", None)
    table = pd.read_csv(tmp_path / "cells.csv")
    assert list(table.columns[:2]) == ["file", "ai_class"]
    assert len(table) == len(blood_session.cells())
    assert table["p_neutrophil"].dtype.kind == "f"
    sidecar = json.loads((tmp_path / "cells.json").read_text(encoding="utf-8"))
    assert sidecar["identity"]["specimen_id"] == "B-1187" and sidecar["status"] == "final"


def test_semicolon_and_decimal_comma_for_european_spreadsheets(tmp_path, report, blood_session, summary_csv):
    pd = pytest.importorskip("pandas")
    export_csv(report, blood_session.cells(), tmp_path / "cells.csv", tmp_path / "summary.csv", DECIMAL_COMMA)
    table = pd.read_csv(tmp_path / "cells.csv", sep=";", decimal=",")
    assert table["p_neutrophil"].dtype.kind == "f"
    rows = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text(encoding="utf-8-sig")), delimiter=";"))
    by_item = {r["item"]: r for r in rows if r["section"] == "count"}
    assert by_item["neutrophil"]["value"] == summary_csv["neutrophil"]["value"].replace(".", ",")


# --- HL7 v2 ----------------------------------------------------------------------------------------
def test_hl7_message_parses_with_hl7apy_and_python_hl7_and_carries_the_csv_numbers(report, summary_csv):
    import hl7
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    text = hl7_message(report)
    strict = parse_message(text.strip("\r"), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert strict.validate()
    message = hl7.parse(text)
    assert str(message.segment("MSH")[9]) == "ORU^R01^ORU_R01" and str(message.segment("MSH")[12]) == "2.5.1"
    assert str(message.segment("OBR")[25]) == "F"
    obx = {str(s[3][0][0]): s for s in message.segments("OBX")}
    for line in report.differential:
        segment = obx[line.result.code.code]
        assert float(str(segment[5])) == csv_value(summary_csv, line.key)
        assert str(segment[3][0][2]) == "LN" and str(segment[11]) == "F"
        assert str(segment[6][0][0]) == line.result.unit.ucum
        assert str(segment[7]) == f"{line.result.interval[0]:g}-{line.result.interval[1]:g}"
        assert str(segment[8]) == (line.result.flag or "N")
    assert float(str(obx["wbc-counted"][5])) == float(summary_csv["wbc_counted"]["final_count"])


def test_hl7_is_preliminary_before_sign_off_with_warnings_as_notes(tmp_path, tiny_model, good_folder):
    import hl7

    session = Session.open(good_folder, Model(tiny_model), tmp_path / "data")
    session.classify()
    session.set_identity("S|1^2&3", "", "Ana")
    report = session_report(session, when=WHEN)
    session.close()
    message = hl7.parse(hl7_message(report))
    assert {str(s[11]) for s in message.segments("OBX")} == {"P"} and str(message.segment("OBR")[25]) == "P"
    notes = [message.unescape(str(s[3])) for s in message.segments("NTE")]
    assert any("white cells counted; the target is 100" in n for n in notes)
    assert message.unescape(str(message.segment("OBR")[3][0][0])) == "S|1^2&3"  # delimiters escaped, not split


def test_a_lab_overrides_a_code_with_a_small_json_file(tmp_path, blood_session):
    codes_file = tmp_path / "lis_codes.json"
    codes_file.write_text(json.dumps({"neutrophil": {"code": "23761-0",
                                                     "display": "Neutrophils/100 leukocytes in Blood by Manual count"}}))
    report = session_report(blood_session, when=WHEN, codes=load_codes(codes_file))
    assert "23761-0^Neutrophils/100 leukocytes in Blood by Manual count^LN" in hl7_message(report)
    codes_file.write_text('{"neutrophil": {"display": "no code"}}')
    with pytest.raises(CodeTableError, match="neutrophil.*code"):
        load_codes(codes_file)


# --- FHIR ------------------------------------------------------------------------------------------
def test_fhir_bundle_validates_and_carries_the_csv_numbers(report, summary_csv):
    from fhir.resources.R4B.bundle import Bundle

    bundle = Bundle.model_validate_json(fhir_json(report))
    resources = [e.resource for e in bundle.entry]
    kinds = [r.get_resource_type() for r in resources]
    assert kinds.count("DiagnosticReport") == 1 and "Device" in kinds and "Specimen" in kinds
    diagnostic = next(r for r in resources if r.get_resource_type() == "DiagnosticReport")
    observations = {r.code.coding[0].code: r for r in resources if r.get_resource_type() == "Observation"}
    assert diagnostic.status == "final" and len(diagnostic.result) == len(observations) == len(report.results)
    assert diagnostic.specimen and diagnostic.performer and diagnostic.conclusion
    device = next(r for r in resources if r.get_resource_type() == "Device")
    assert device.identifier[0].value == report.model.sha256
    for line in report.differential:
        obs = observations[line.result.code.code]
        assert obs.code.coding[0].system == LOINC and obs.status == "final"
        assert float(obs.valueQuantity.value) == csv_value(summary_csv, line.key)
        assert obs.valueQuantity.system == "http://unitsofmeasure.org" and obs.valueQuantity.code == line.result.unit.ucum
        assert float(obs.referenceRange[0].low.value) == float(summary_csv[line.key]["ref_low"])
        assert obs.interpretation[0].coding[0].code == (line.result.flag or "N")


# --- PDF, GUI panel, CLI ---------------------------------------------------------------------------
def test_pdf_has_identity_page_numbers_signatures_and_a_gallery(tmp_path, report, blood_session, qapp):
    from desktop.outlets.pdf import report_document, write_pdf

    document = report_document(report, blood_session.folder)
    assert not document.preliminary and "PRELIMINARY" not in document.html
    assert "B-1187" in document.html and "Ana Ruiz" in document.html and report.app_version in document.html
    assert "Cell gallery" in document.html and len(document.images) >= 8
    assert "reference_intervals.json" not in document.html
    write_pdf(tmp_path / "r.pdf", document)
    data = (tmp_path / "r.pdf").read_bytes()
    assert data.startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(tmp_path / "r.pdf"), "-"], capture_output=True, text=True).stdout
        assert "page 1 of 2" in text and "page 2 of 2" in text
        for line in report.differential:
            assert line.result.text() in text


def test_gui_panel_shows_the_report_numbers_and_the_nrbc_unit(report, qtbot):
    from desktop.ui.summary_panel import SummaryPanel

    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.show_report(report)
    text = panel.text.toPlainText()
    nrbc = next(c.result for c in report.classes if c.group == "nrbc")
    assert f"{nrbc.text()}\n/100 WBC" in text  # the longer unit on the value's second line (the panel fits 1366x768 at 150%)
    for line in report.differential:
        assert line.result.text() in text


def test_cli_prints_the_report(report, capsys):
    from desktop.cli import print_report

    print_report(report)
    out = capsys.readouterr().out
    assert "Specimen ID: B-1187" in out and "Signed off" in out
    for line in report.differential:
        assert f"{line.result.text()} {line.result.unit.symbol}" in out


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "desktop.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=180)


def test_cli_report_writes_every_outlet_for_a_stored_session(tmp_path, tiny_model, good_folder):
    import hl7
    from fhir.resources.R4B.bundle import Bundle

    data = tmp_path / "data"
    out = run_cli("classify", good_folder, "--model", tiny_model, "--data-dir", data, "--specimen", "S-9",
                  "--hl7", tmp_path / "c.hl7")
    assert out.returncode == 0, out.stderr
    assert hl7.parse((tmp_path / "c.hl7").read_bytes().decode()).segment("OBR")[25][0] == "P"
    out = run_cli("report", good_folder, "--model", tiny_model, "--data-dir", data, "--hl7", tmp_path / "m.hl7",
                  "--fhir", tmp_path / "b.json", "--csv", tmp_path / "c.csv", "--summary", tmp_path / "s.csv",
                  "--csv-locale", "semicolon")
    assert out.returncode == 0, out.stderr
    assert "Specimen ID: S-9" in out.stdout
    Bundle.model_validate_json((tmp_path / "b.json").read_text(encoding="utf-8"))
    assert (tmp_path / "s.csv").read_text(encoding="utf-8-sig").startswith("section;item;")
    session_file = next((data / "sessions").glob("*.sqlite"))
    out = run_cli("report", session_file, "--fhir", tmp_path / "again.json")
    assert out.returncode == 2 and "not installed" in out.stderr  # the tiny model is not among the installed ones
    out = run_cli("report", tmp_path, "--model", tiny_model, "--data-dir", data)
    assert out.returncode == 1 and "classify it first" in out.stderr


def test_cli_report_of_a_session_file_finds_its_model_by_hash(tmp_path, blood_session, summary_csv):
    import hl7

    out = run_cli("report", blood_session.store.path, "--hl7", tmp_path / "m.hl7")
    assert out.returncode == 0, out.stderr
    message = hl7.parse((tmp_path / "m.hl7").read_bytes().decode())
    values = {str(s[3][0][0]): float(str(s[5])) for s in message.segments("OBX")}
    assert values["26511-6"] == csv_value(summary_csv, "neutrophil") and str(message.segment("OBR")[25]) == "F"
