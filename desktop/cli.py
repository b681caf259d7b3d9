"""`slidetally-cli`: classify folders, list models and benchmark, without the GUI."""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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

from desktop.core.errors import SlideTallyError, StoreError  # noqa: E402
from desktop.core.inference.imaging import UnreadableImage, load_prepared  # noqa: E402
from desktop.core.inference.model import discover_models  # noqa: E402
from desktop.core.inference.pipeline import Progress  # noqa: E402
from desktop.core.inference.scan import scan_folder  # noqa: E402
from desktop.core.logs import log_to_file  # noqa: E402
from desktop.core.records.session import Session, resolve_model  # noqa: E402
from desktop.core.report.assay_report import AssayReport  # noqa: E402 - after the Ctrl+C handler
from desktop.core.report.codes import load_codes  # noqa: E402
from desktop.core.report.summary import DEFAULT_TARGET_WBC  # noqa: E402
from desktop.core.resources import resource, user_models_dir  # noqa: E402
from desktop.outlets.csv import CsvStyle, export_csv  # noqa: E402
from desktop.outlets.lis import write_fhir, write_hl7  # noqa: E402
from desktop.outlets.text import report_lines  # noqa: E402

if _OWN_CTRL_C:
    if _interrupted:  # Ctrl+C while loading: ends as quietly as later on. Nothing is open yet.
        print("\ncancelled", file=sys.stderr, flush=True)
        os._exit(130)
    signal.signal(signal.SIGINT, _on_ctrl_c)

# Exit codes (the README lists them).
DONE, NOTHING, ERROR, NOT_SAVED, FOREIGN, INTERNAL, CANCELLED, PIPE_CLOSED = 0, 1, 2, 3, 4, 70, 130, 141


class CliError(SlideTallyError):
    """A refused command line, in one sentence."""


class NothingToDo(SlideTallyError):
    """Nothing to list or classify: not an error, but not a result either (exit 1)."""


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
    _check_outputs(args)
    session = Session.open(folder, args.model, Path(args.data_dir) if args.data_dir else None)
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


def cmd_report(args) -> int:
    """The report of a stored session (a folder classified before, or its session file), in any outlet."""
    _check_outputs(args)
    session = open_stored_session(Path(args.session), args.model, _data_dir(args))
    try:
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

    if target.is_file():
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
    if target.is_dir():
        model = resolve_model(model_arg, target)
        if not session_path(data_dir, target, model.info.key).exists():
            raise NothingToDo(f"no stored session of {readable(str(target))} with {model.info.key} in {data_dir}; "
                              "classify it first")
        return Session.open(target, model, data_dir)
    raise CliError(f"{readable(str(target))} is neither an analysed folder nor a session file")


def _check_outputs(args) -> None:
    outputs = [Path(p).resolve() for p in (args.csv, args.summary, args.hl7, args.fhir, args.pdf) if p]
    if len(set(outputs)) < len(outputs):
        raise CliError("two outputs (--csv, --summary, --hl7, --fhir, --pdf) name the same file; give each its own.")


def _report(session: Session, cells, args) -> AssayReport:
    codes = load_codes(Path(args.codes)) if args.codes else None
    return session.report(target=args.target, operator=args.operator.strip(), codes=codes, cells=cells)


def write_outputs(report: AssayReport, cells, folder: Path, args) -> None:
    """Every outlet asked for, from the one report."""
    if args.csv or args.summary:
        export_csv(report, cells, Path(args.csv) if args.csv else None, Path(args.summary) if args.summary else None,
                   CsvStyle.named(args.csv_locale))
    if args.hl7:
        write_hl7(report, Path(args.hl7))
    if args.fhir:
        write_fhir(report, Path(args.fhir))
    if args.pdf:
        from desktop.outlets.pdf import heat_image, report_document, write_pdf_headless

        write_pdf_headless(Path(args.pdf), report_document(report, folder, heat_image(report)))


def print_report(report: AssayReport, classified_now: int | None = None) -> None:
    print("\n".join(report_lines(report, classified_now)))


def _data_dir(args) -> Path:
    from desktop.core.resources import user_data_dir

    return Path(args.data_dir) if args.data_dir else user_data_dir()


def cmd_verify(args) -> int:
    """The model's calls against the technicians' final calls over the signed-off sessions."""
    from desktop.core.atomic import write_atomically
    from desktop.core.lab.site_cells import signed_sessions
    from desktop.core.lab.verification import build_report, report_html, report_rows, report_text
    from desktop.outlets.csv import render_csv

    model = resolve_model(args.model)
    sessions = signed_sessions(_data_dir(args), model.info, args.since)
    if not sessions:
        raise CliError(f"no signed-off sessions of {model.info.key} (this model file) in {_data_dir(args)}"
                       + (f" since {args.since}" if args.since else ""))
    report = build_report(sessions, model.info)
    print(report_text(report))
    if args.csv:
        write_atomically(Path(args.csv), render_csv(report_rows(report)))
    if args.pdf:
        from desktop.outlets.pdf import write_pdf_headless

        write_pdf_headless(Path(args.pdf), report_html(report))
    return 0


def cmd_adapt(args) -> int:
    """Fit a site model on verified cells (cross-validated), write it, print before/after."""
    from desktop.core.lab.adaptation import AdaptationRefused
    from desktop.core.lab.site_cells import cells_from_folder, cells_from_sessions, has_specimens, signed_sessions
    from desktop.core.lab.site_model import prepare_adaptation, write_site_model

    model = resolve_model(args.model)
    if model.info.site:
        raise CliError(f"{model.info.key} is a site model; adapt from the model it was made from")
    notes = []
    if args.verified:
        cells = cells_from_folder(Path(args.verified), model.info)
        source = {"verified_folder": str(Path(args.verified).resolve()), "cells": len(cells)}
        if not has_specimens(Path(args.verified), model.info):
            notes.append("no specimens are known (DIR/<class key>/<image>): the folds are by image, cells of one "
                         "specimen may be on both sides, and the figures are optimistic")
    else:
        sessions = signed_sessions(_data_dir(args), model.info, args.since)
        cells = cells_from_sessions(sessions, model.info)
        signers = sorted({n for s in sessions for n in (s.meta.get("signed_by", ""), s.meta.get("verified_by", "")) if n})
        source = {"sessions": [s.name for s in sessions], "since": args.since or "", "cells": len(cells),
                  "signed_by": signers}
    start = time.perf_counter()
    try:
        prepared = prepare_adaptation(model, cells, source)
    except AdaptationRefused as exc:
        raise CliError(str(exc)) from exc
    a = prepared.adaptation
    for problem in prepared.problems[:10]:
        print(f"warning: skipped {problem}", file=sys.stderr)
    destination = Path(args.out) if args.out else user_models_dir()
    path = write_site_model(model, prepared, args.site, args.approved_by, destination, override=args.accept_loss)
    print(f"site model written: {path} ({time.perf_counter() - start:.1f} s)")
    print(f"site cross-validated ({a.folds}); cells per class: "
          + ", ".join(f"{k} {n}" for k, n in a.cells_per_class.items()))
    if a.kept_from_base:
        print(f"held close to the base model (fewer than 10 verified cells): {', '.join(a.kept_from_base)}")
    print(f"{'':<10} {'accuracy':>9} {'balanced':>9} {'accepted':>9} {'right among accepted':>21}")
    for name, f in (("before", a.before), ("after", a.after)):
        print(f"{name:<10} {f.accuracy:>9.3f} {f.balanced_accuracy:>9.3f} {f.accepted_share:>9.3f} "
              f"{f.accepted_accuracy:>21.3f}")
    for note in [*a.notes, *notes]:
        print(f"note: {note}")
    return 0


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


def _peak_rss_mb() -> float:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    except ImportError:  # Windows
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / 2**20


def cmd_bench(args) -> int:
    """Decode+resize alone (D), model alone (M), end to end (E), in one run, on all cores."""
    folder = Path(args.folder)
    model = resolve_model(args.model, folder)
    files = [f for f in scan_folder(folder) if not f.problem]
    if not files:
        raise CliError(f"no images in {readable(str(folder))}")
    items = (files * (args.images // len(files) + 1))[: args.images]
    spec = model.info.input
    workers = os.cpu_count() or 1

    def decode_all():
        def one(chunk):
            for f in chunk:
                try:
                    load_prepared(f.path, spec)
                except UnreadableImage:
                    pass
        chunks = [items[i:i + 64] for i in range(0, len(items), 64)]
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, chunks))

    import numpy as np

    one_batch = []
    for f in files:
        try:
            one_batch.append(load_prepared(f.path, spec))
        except UnreadableImage:
            continue
        if len(one_batch) == args.batch:
            break
    if not one_batch:
        raise CliError(f"no readable images in {readable(str(folder))}")
    batch = np.stack((one_batch * (args.batch // len(one_batch) + 1))[: args.batch])

    def infer_all():
        for _ in range(len(items) // args.batch):
            model.predict(batch)

    def end_to_end():
        with tempfile.TemporaryDirectory() as tmp:
            # distinct relative names so the store keeps every row
            from desktop.core.inference.scan import SourceFile
            unique = [SourceFile(f.path, f"{i}/{f.relative}", f.size, f.mtime) for i, f in enumerate(items)]
            session = Session.open(folder, model, Path(tmp))
            session.classify_items(unique, set(), None, None, args.batch)
            session.close()

    results = {}
    for name, fn, n in (("decode+resize", decode_all, len(items)), ("model", infer_all, (len(items) // args.batch) * args.batch),
                        ("end-to-end", end_to_end, len(items))):
        fn() if name != "end-to-end" else None  # warm-up (caches, ORT arena)
        start = time.perf_counter()
        fn()
        results[name] = n / (time.perf_counter() - start)
    d, m, e = results["decode+resize"], results["model"], results["end-to-end"]
    limit = 1 / (1 / d + 1 / m)
    print(f"model {model.info.key} v{model.info.version}, {len(items)} images from {folder}, {workers} cores")
    print(f"  D decode+resize  {d:8.0f} img/s")
    print(f"  M model alone    {m:8.0f} img/s (batch {args.batch})")
    print(f"  E end-to-end     {e:8.0f} img/s (read+decode+resize+infer+store)")
    print(f"  limit 1/(1/D+1/M) {limit:7.0f} img/s; E / limit = {e / limit:.2f}")
    print(f"  peak RSS {_peak_rss_mb():.0f} MB")
    return 0


def _output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", help="write the per-image CSV here (and its JSON sidecar beside it)")
    p.add_argument("--summary", help="write the summary CSV here")
    p.add_argument("--csv-locale", choices=("comma", "semicolon"), default="comma",
                   help="'semicolon': ';' between fields and a decimal comma, for European spreadsheets")
    p.add_argument("--hl7", help="write the HL7 v2.5.1 ORU^R01 message here")
    p.add_argument("--fhir", help="write the FHIR R4B Bundle (JSON) here")
    p.add_argument("--pdf", help="write the PDF report here")
    p.add_argument("--codes", help="the lab's LOINC/code overrides (JSON; default: lis_codes.json in the user data folder)")
    p.add_argument("--target", type=int, default=DEFAULT_TARGET_WBC, help="white cells to count (blood; default 100)")
    p.add_argument("--operator", default=getpass.getuser(), help="who runs it: in the audit trail and the exports")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slidetally-cli", description="SlideTally without the GUI.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("classify", help="classify a folder of images and print the counts")
    p.add_argument("folder")
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
    p.set_defaults(func=cmd_adapt)
    p = sub.add_parser("models", help="list the models with their test metrics")
    p.add_argument("--folder", help="look only in this folder")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("bench", help="images/s for decode, model and end to end; peak memory")
    p.add_argument("folder")
    p.add_argument("--model")
    p.add_argument("--images", type=int, default=2000, help="how many images (the folder is repeated)")
    p.add_argument("--batch", type=int, default=64)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 never stops the output
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
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
        # The reader went away (`| head`): what was classified is saved; stay quiet on the way out.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return PIPE_CLOSED
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


if __name__ == "__main__":
    raise SystemExit(main())
