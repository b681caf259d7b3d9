"""The command line: classify, report, models and their exit codes; verify and adapt are in
`lab.py`, bench in `bench.py`. The Ctrl+C guard comes first, before the libraries load."""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
import threading
import time
from pathlib import Path

from desktop import __version__
from desktop.core.names import readable

_interrupted = False


def _remember_ctrl_c(signum, frame):
    """Ctrl+C while the libraries load: remembered, and acted on once they have loaded. Raised at
    once, the KeyboardInterrupt could land inside an extension's import (an ImportError then) or in
    a callback from native code (pydantic-core's), which only prints it: the Ctrl+C would be lost."""
    global _interrupted
    _interrupted = True


def _on_ctrl_c(signum, frame):
    """Python's own Ctrl+C handler, remembering that it ran."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


_OWN_CTRL_C = (threading.current_thread() is threading.main_thread()
               and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
if _OWN_CTRL_C:
    signal.signal(signal.SIGINT, _remember_ctrl_c)

from desktop.cli.arguments import CliError, NothingToDo, data_dir  # noqa: E402 - after the Ctrl+C handler
from desktop.cli.bench import cmd_bench  # noqa: E402
from desktop.cli.lab import cmd_adapt, cmd_verify  # noqa: E402
from desktop.cli.records import cmd_audit_check  # noqa: E402
from desktop.core.errors import SlideTallyError, StoreError  # noqa: E402
from desktop.core.inference.catalog import resolve_model  # noqa: E402
from desktop.core.inference.model import discover_models  # noqa: E402
from desktop.core.inference.model_info import IDC, MPP_RANGE  # noqa: E402
from desktop.core.inference.pipeline import Progress  # noqa: E402
from desktop.core.inference.wsi import is_slide_file, plausible_mpp  # noqa: E402
from desktop.core.logs import log_to_file  # noqa: E402
from desktop.core.records.session import Session  # noqa: E402
from desktop.core.report.assay_report import AssayReport  # noqa: E402
from desktop.core.report.codes import load_codes  # noqa: E402
from desktop.core.report.session_report import session_report  # noqa: E402
from desktop.core.resources import resource, user_models_dir  # noqa: E402
from desktop.outlets.csv import CsvStyle  # noqa: E402
from desktop.outlets.text import report_lines  # noqa: E402

if _OWN_CTRL_C:
    if _interrupted:  # Ctrl+C while loading: ends as quietly as later on. Nothing is open yet.
        print("\ncancelled", file=sys.stderr, flush=True)
        os._exit(130)
    signal.signal(signal.SIGINT, _on_ctrl_c)

# Exit codes (the README lists them).
DONE, NOTHING, ERROR, NOT_SAVED, FOREIGN, INTERNAL, CANCELLED, PIPE_CLOSED = 0, 1, 2, 3, 4, 70, 130, 141


class ProgressBar:
    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if not self.tty or (now - self.last < 0.1 and p.done < p.total):
            return
        self.last = now
        width = 30
        filled = int(width * p.done / max(p.total, 1))
        eta = f"{p.eta_s:4.0f}s" if p.eta_s != float("inf") else "  ?s"
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {p.done}/{p.total} "
                          f"{p.images_per_s:6.0f} img/s ETA {eta}")
        if p.done >= p.total:
            self.stream.write("\n")
        self.stream.flush()


def cmd_classify(args) -> int:
    folder = Path(args.folder)
    _check_outputs(args, folder, Path(args.model) if args.model and args.model.endswith(".onnx") else None)
    session = Session.open(folder, args.model, Path(args.data_dir) if args.data_dir else None, slide_mpp=args.mpp)
    try:
        operator = args.operator.strip()
        if args.specimen:
            session.set_identity(args.specimen, args.patient or "", operator)
        session.events.notice.connect(lambda text: print(f"warning: {text}", file=sys.stderr))
        cancel = threading.Event()
        try:
            result = session.classify(ProgressBar(), cancel, check_foreign=not args.force)
        except KeyboardInterrupt:
            cancel.set()
            raise
        cells = session.cells()
        if not cells or result.changes.folder_empty:
            raise NothingToDo(f"nothing to classify: {readable(str(folder))} holds no files"
                              + ("; the stored session is kept as it was" if cells else ""))
        report = _report(session, cells, args)
        write_outputs(report, cells, session.folder, args)
        print_report(report, result.classified)
        if result.foreign:
            print("stopped: the images look foreign to this model; --force classifies them anyway", file=sys.stderr)
            return FOREIGN
        return DONE
    finally:
        session.close()


def _mpp_argument(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of µm per pixel") from None
    if not plausible_mpp(value):
        raise argparse.ArgumentTypeError(f"{value:g} µm per pixel is not plausible ({MPP_RANGE[0]:g}-{MPP_RANGE[1]:g})")
    return value


def cmd_report(args) -> int:
    """The report of a stored session (a folder classified before, or its session file), in any outlet."""
    _check_outputs(args, None, inputs=(Path(args.session),))
    session = open_stored_session(Path(args.session), args.model, data_dir(args))
    try:
        _check_outputs(args, session.folder, session.info.path, inputs=(Path(args.session), session.store.path))
        if session.folder.is_dir() or is_slide_file(session.folder):
            session.look_for_changes()
        cells = session.cells()
        if not cells:
            raise NothingToDo(f"the session of {readable(str(session.folder))} holds no cells; classify it first")
        report = _report(session, cells, args)
        write_outputs(report, cells, session.folder, args)
        print_report(report)
        return DONE
    finally:
        session.close()


def open_stored_session(target: Path, model_arg: str | None, data_dir: Path) -> Session:
    """A session database (…/sessions/<hash>-<model>.sqlite) or an analysed folder, as `classify` stored it.
    Nothing is created: a folder never classified is said so."""
    import sqlite3

    from desktop.core.records.store import SessionStore, read_session, session_path

    slide = target.is_file() and is_slide_file(target)
    if target.is_file() and not slide:
        try:
            meta, _ = read_session(target)
        except (sqlite3.Error, OSError) as exc:  # not a database, or not readable
            raise CliError(f"{readable(str(target))} is not a SlideTally session file ({exc})") from exc
        if "folder" not in meta or "model_sha256" not in meta:
            raise CliError(f"{readable(str(target))} is not a SlideTally session file")
        infos, _problems = discover_models()
        match = [i for i in infos if i.sha256 == meta["model_sha256"]]
        if not match:
            raise CliError(f"the session was made with model {meta.get('model', '?')} (SHA-256 "
                           f"{meta['model_sha256'][:16]}…), which is not installed here")
        model = resolve_model(match[0].path)
        folder = Path(meta["folder"])
        return Session(folder, model, SessionStore(target, folder, model.info.key, model.info.sha256))
    if target.is_dir() or slide:
        model = resolve_model(model_arg or (IDC if slide else None), target if target.is_dir() else None)
        if not session_path(data_dir, target, model.info.key).exists():
            raise NothingToDo(f"no stored session of {readable(str(target))} with {model.info.key} in {data_dir}; "
                              "classify it first")
        return Session.open(target, model, data_dir, archive=False)  # a report reads; it never archives
    raise CliError(f"{readable(str(target))} is neither an analysed folder, a whole-slide image nor a session file")


def _check_outputs(args, analysed: Path | None, model_file: Path | None = None, inputs: tuple = ()) -> None:
    """Every output path, before anything is read or written (see outlets/destinations.py)."""
    from desktop.core.inference.model import find_model_files
    from desktop.outlets.csv import sidecar_path
    from desktop.outlets.destinations import check_destinations

    outputs = {flag: Path(value) for flag, value in (("--csv", args.csv), ("--summary", args.summary),
                                                     ("--hl7", args.hl7), ("--fhir", args.fhir), ("--pdf", args.pdf))
               if value}
    if args.csv:
        outputs["the --csv file's JSON sidecar"] = sidecar_path(Path(args.csv))
    shipped = resource("models")
    check_destinations(outputs, analysed=analysed, data_dir=data_dir(args),
                       model_files=[*find_model_files(shipped, user_models_dir()), *([model_file] if model_file else [])],
                       model_folders=[shipped], inputs=inputs)


def _report(session: Session, cells, args) -> AssayReport:
    codes = load_codes(Path(args.codes)) if args.codes else None
    return session_report(session, target=args.target, operator=args.operator.strip(), codes=codes, cells=cells)


def write_outputs(report: AssayReport, cells, folder: Path, args) -> None:
    """Every outlet asked for, from the one report: all rendered and staged first, then all renamed
    into place, or none (a failure in any leaves the old files and no temp file)."""
    from desktop.core.atomic import all_or_none
    from desktop.outlets.csv import csv_files
    from desktop.outlets.fhir import fhir_json
    from desktop.outlets.hl7 import hl7_message

    with all_or_none() as out:
        if args.csv or args.summary:
            for path, text, encoding in csv_files(report, cells, Path(args.csv) if args.csv else None,
                                                  Path(args.summary) if args.summary else None,
                                                  CsvStyle.named(args.csv_locale)):
                out.write(path, text, encoding)
        if args.hl7:
            out.write(Path(args.hl7), hl7_message(report), "utf-8")
        if args.fhir:
            out.write(Path(args.fhir), fhir_json(report), "utf-8")
        if args.pdf:
            from desktop.outlets.pdf import headless_app, heat_image, render_pdf, report_document

            _app = headless_app()
            with out.file(Path(args.pdf)) as tmp:
                render_pdf(tmp, report_document(report, folder, heat_image(report)))


def print_report(report: AssayReport, classified_now: int | None = None) -> None:
    print("\n".join(report_lines(report, classified_now)))


def cmd_models(args) -> int:
    folders = (Path(args.folder),) if args.folder else (resource("models"), user_models_dir())
    infos, problems = discover_models(*folders)
    for info in infos:
        m = info.metrics
        extra = f"  macro-F1 {m['macro_f1']:.3f}" if "macro_f1" in m else ""
        acc = f"{info.accuracy_label} {m['accuracy']:.4f}" if "accuracy" in m else "no metrics"
        print(f"{info.key:<16} v{info.version:<8} {info.task:<20} {acc}{extra}  n={m.get('n', '?')}  ({info.display_name})")
    for problem in problems:
        print(f"skipped: {problem}")
    return DONE if infos else NOTHING


def _output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", help="write the per-image CSV here (and its JSON sidecar beside it)")
    p.add_argument("--summary", help="write the summary CSV here")
    p.add_argument("--csv-locale", choices=("comma", "semicolon"), default="comma",
                   help="'semicolon': ';' between fields and a decimal comma, for European spreadsheets")
    p.add_argument("--hl7", help="write the HL7 v2.5.1 ORU^R01 message here")
    p.add_argument("--fhir", help="write the FHIR R4B Bundle (JSON) here")
    p.add_argument("--pdf", help="write the PDF report here")
    p.add_argument("--codes", help="the lab's LOINC/code overrides (JSON; default: lis_codes.json in the user data folder)")
    p.add_argument("--target", type=int, default=None,
                   help="white cells to count (blood; default: the session's, 100 unless set; a signed session keeps its own)")
    p.add_argument("--operator", default=getpass.getuser(), help="who runs it: in the audit trail and the exports")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slidetally-cli", description="SlideTally without the GUI.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("classify", help="classify a folder of images (or one whole-slide image) and print the counts")
    p.add_argument("folder", help="a folder of images, or a whole-slide image (.svs, .ndpi, .mrxs, .scn, tiled TIFF)")
    p.add_argument("--mpp", type=_mpp_argument,
                   help="µm per pixel of whole slides that do not record it (the scanner's; kept with the session)")
    p.add_argument("--model", help="model key (e.g. blood-pbc8), task, or path to an .onnx file")
    _output_arguments(p)
    p.add_argument("--specimen", help="specimen / accession ID the images belong to (stored with the session)")
    p.add_argument("--patient", help="patient ID (optional, with --specimen)")
    p.add_argument("--force", action="store_true",
                   help="classify even when the first images look foreign to the model (mostly Unfamiliar)")
    p.add_argument("--data-dir", help="where sessions are stored (default: the user data folder)")
    p.set_defaults(func=cmd_classify)
    p = sub.add_parser("report", help="the report of a stored session, as CSV, PDF, HL7 v2 or FHIR")
    p.add_argument("session", help="an analysed folder, or a session file (…/sessions/*.sqlite)")
    p.add_argument("--model", help="with a folder: the model it was classified with (default: the assay it looks like)")
    _output_arguments(p)
    p.add_argument("--data-dir", help="where sessions are stored (default: the user data folder)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("verify", help="verification report: the model's calls against the technicians' final calls")
    p.add_argument("--model", help="model key, task or .onnx path (default: the blood model)")
    p.add_argument("--since", help="only sessions signed off on or after this date (e.g. 2026-11-01)")
    p.add_argument("--pdf", help="write the report as PDF here")
    p.add_argument("--csv", help="write the report's tables as CSV here")
    p.add_argument("--data-dir", help="where sessions are stored (default: the user data folder)")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("adapt", help="adapt a model to this lab from its verified cells (writes a site model)")
    p.add_argument("--model", help="base model key, task or .onnx path (default: the blood model)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-sessions", action="store_true", help="use the signed-off sessions of the base model")
    source.add_argument("--verified", metavar="DIR",
                        help="a labelled folder DIR/<specimen>/<class key>/<image> (or DIR/<class key>/<image>)")
    p.add_argument("--since", help="with --from-sessions: only sessions signed off on or after this date")
    p.add_argument("--site", required=True, help="the lab's short name, e.g. 'north-lab'")
    p.add_argument("--out", help="the .onnx file to write (default: a new file in the user models folder)")
    p.add_argument("--approved-by", default=getpass.getuser(), help="who approved the site model (recorded in it)")
    p.add_argument("--accept-loss", metavar="REASON",
                   help="write the site model even if it is worse than the base model, for this reason (kept in it)")
    p.add_argument("--data-dir", help="where sessions are stored (default: the user data folder)")
    p.add_argument("--report", metavar="FILE.json", help="write the site cross-validated before/after, with the "
                   "accuracy's 95%% interval, as JSON")
    p.set_defaults(func=cmd_adapt)
    p = sub.add_parser("audit-check", help="check that stored records are what SlideTally wrote (exit 2 if altered, "
                                           "3 if one cannot be read)")
    p.add_argument("target", nargs="?", help="an analysed folder or a session file (default: every session)")
    p.add_argument("--against", metavar="FILE", help="a delivered HL7 message, FHIR Bundle, CSV sidecar or text holding "
                                                     "the record's seal: exit 0 if the record still matches it, 2 if not")
    p.add_argument("--data-dir", help="where sessions are stored (default: the user data folder)")
    p.set_defaults(func=cmd_audit_check)
    p = sub.add_parser("models", help="list the models with their test metrics")
    p.add_argument("--folder", help="look only in this folder")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("bench", help="images/s for decode, model and end to end; peak memory")
    p.add_argument("folder")
    p.add_argument("--model")
    p.add_argument("--images", type=int, default=2000, help="how many images (the folder is repeated)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="decode and model threads (default: one per core)")
    p.add_argument("--model-threads", type=int, default=0, help="ONNX Runtime threads (default: as --threads)")
    p.add_argument("--no-stages", action="store_true", help="leave out the per-stage breakdown")
    p.add_argument("--compare", metavar="REF", help="alternate with another checkout or model file; print the ratios")
    p.add_argument("--rounds", type=int, default=2, help="A/B rounds of --compare")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    _never_stop_on_encoding()
    try:
        args = build_parser().parse_args(argv)
        if argv is None:  # run as a program: the core's log goes to the app's log file, not the terminal
            log_to_file()
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below, not at exit
        return code
    except KeyboardInterrupt:
        return _cancelled(argv)
    except NothingToDo as exc:
        return _say(str(exc), NOTHING)
    except StoreError as exc:
        return _say(f"error: {exc}", NOT_SAVED)
    except SlideTallyError as exc:  # every refusal a technician can meet: a bad code file, a locked session …
        return _say(f"error: {exc}", ERROR)
    except BrokenPipeError:
        return _reader_gone()
    except Exception as exc:  # one line for the technician; the traceback on request
        if _interrupted:  # a Ctrl+C that surfaced as another error (a late import in progress)
            return _cancelled(argv)
        if os.environ.get("SLIDETALLY_TRACEBACK"):
            raise
        return _say(f"error: unexpected problem ({type(exc).__name__}: {exc}); set SLIDETALLY_TRACEBACK=1 to see where",
                    INTERNAL)
    finally:
        if argv is None and threading.current_thread() is threading.main_thread():
            # Run as a program, the work is done and said: a late Ctrl+C has nothing left to cancel.
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _never_stop_on_encoding() -> None:
    """A file name that is not UTF-8 never stops the output: it is written with backslash escapes."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _reader_gone() -> int:
    """The reader went away (`| head`): what was classified is saved; stay quiet on the way out."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return PIPE_CLOSED


def _cancelled(argv: list[str] | None) -> int:
    """Ctrl+C: the session is closed by now and every batch stored so far is kept."""
    code = _say("cancelled: what was classified is kept", CANCELLED, "\n")
    # Run as a program, leave with our code at once: a KeyboardInterrupt that went through an
    # extension's start-up leaves CPython (3.11) marked to kill itself with SIGINT on the way out.
    if argv is None and _interrupted:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (BrokenPipeError, OSError):
                pass
        os._exit(code)
    return code


def _say(line: str, code: int, before: str = "") -> int:
    try:
        print(before + line, file=sys.stderr)
    except (BrokenPipeError, OSError):
        pass
    return code

