"""`verify` and `adapt`: the lab's tools on the command line (the same core as Tools → … in the window)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from desktop.cli.arguments import CliError, data_dir
from desktop.core.inference.catalog import resolve_model
from desktop.core.resources import user_models_dir


def _check_verify_outputs(args, model_file: Path) -> None:
    """`verify --csv/--pdf` pass the one destination check every writer passes."""
    from desktop.core.inference.model import find_model_files
    from desktop.core.resources import resource
    from desktop.outlets.destinations import check_destinations

    outputs = {flag: Path(value) for flag, value in (("--csv", args.csv), ("--pdf", args.pdf)) if value}
    shipped = resource("models")
    check_destinations(outputs, analysed=None, data_dir=data_dir(args),
                       model_files=[*find_model_files(shipped, user_models_dir()), model_file], model_folders=[shipped])


def cmd_verify(args) -> int:
    """The model's calls against the technicians' final calls over the signed-off sessions."""
    from desktop.core.atomic import write_atomically
    from desktop.core.lab.site_cells import signed_sessions
    from desktop.core.lab.verification import build_report, report_html, report_rows, report_text
    from desktop.outlets.csv import render_csv

    model = resolve_model(args.model)
    _check_verify_outputs(args, model.info.path)
    sessions = signed_sessions(data_dir(args), model.info, args.since)
    if sessions.altered:
        print(f"warning: {sessions.altered_note()}", file=sys.stderr)
    if not sessions:
        raise CliError(f"no signed-off sessions of {model.info.key} (this model file) in {data_dir(args)}"
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
    """Fit a site model on verified cells (cross-validated), write it, print before/after (and --report)."""
    from desktop.core.lab.adaptation import AdaptationRefused
    from desktop.core.lab.site_model import prepare_adaptation, write_site_model

    model = resolve_model(args.model)
    if model.info.site:
        raise CliError(f"{model.info.key} is a site model; adapt from the model it was made from")
    if args.report:
        from desktop.outlets.destinations import check_destinations

        check_destinations({"--report": Path(args.report)}, analysed=None, data_dir=data_dir(args),
                           model_files=[model.info.path])
    cells, source, notes = _verified_cells(args, model.info)
    start = time.perf_counter()
    try:
        prepared = prepare_adaptation(model, cells, source)
    except AdaptationRefused as exc:
        raise CliError(str(exc)) from exc
    for problem in prepared.problems[:10]:
        print(f"warning: skipped {problem}", file=sys.stderr)
    destination = Path(args.out) if args.out else user_models_dir()
    path = write_site_model(model, prepared, args.site, args.approved_by, destination, override=args.accept_loss)
    print(f"site model written: {path} ({time.perf_counter() - start:.1f} s)")
    _print_adaptation(prepared.adaptation, notes)
    if args.report:
        _write_adapt_report(Path(args.report), prepared.adaptation, notes)
    return 0


def _verified_cells(args, info) -> tuple[list, dict, list[str]]:
    """The cells to fit on (from --verified DIR, else the signed-off sessions), where they came from, and notes."""
    from desktop.core.lab.site_cells import (
        cells_from_folder,
        cells_from_sessions,
        has_specimens,
        signed_sessions,
        who_signed,
    )

    notes = []
    if args.verified:
        cells = cells_from_folder(Path(args.verified), info)
        source = {"verified_folder": str(Path(args.verified).resolve()), "cells": len(cells)}
        if not has_specimens(Path(args.verified), info):
            notes.append("no specimens are known (DIR/<class key>/<image>): the folds are by image, cells of one "
                         "specimen may be on both sides, and the figures are optimistic")
    else:
        sessions = signed_sessions(data_dir(args), info, args.since)
        if sessions.altered:
            print(f"warning: {sessions.altered_note()}", file=sys.stderr)
        cells = cells_from_sessions(sessions, info)
        source = {"sessions": [s.name for s in sessions], "since": args.since or "", "cells": len(cells),
                  **who_signed(sessions)}
    return cells, source, notes


def _print_adaptation(a, notes: list[str]) -> None:
    """The site cross-validated before/after table, the classes held close to the base model, the notes."""
    print(f"site cross-validated ({a.folds}); cells per class: "
          + ", ".join(f"{k} {n}" for k, n in a.cells_per_class.items()))
    if a.kept_from_base:
        print(f"fewer than 10 verified cells (held close to the base model; the site model's calls of these go to "
              f"Review): {', '.join(a.kept_from_base)}")
    print(f"{'':<10} {'accuracy':>9} {'balanced':>9} {'accepted':>9} {'right among accepted':>21}")
    for name, f in (("before", a.before), ("after", a.after)):
        print(f"{name:<10} {f.accuracy:>9.3f} {f.balanced_accuracy:>9.3f} {f.accepted_share:>9.3f} "
              f"{f.accepted_accuracy:>21.3f}")
    if a.after.accuracy_interval:
        print(f"accuracy after: {a.after.interval_text()}")
    for note in [*a.notes, *notes]:
        print(f"note: {note}")


def _write_adapt_report(path: Path, a, notes: list[str]) -> None:
    """`--report FILE.json`: the same figures as JSON."""
    import json

    from desktop.core.atomic import write_atomically

    report = {"before": a.before.as_dict(), "after": a.after.as_dict(), "folds": a.folds,
              "method": "quick: a new head on the model's features", "review_classes": a.kept_from_base,
              "cells_per_class": a.cells_per_class, "estimate": "site cross-validated", "notes": [*a.notes, *notes]}
    write_atomically(path, json.dumps(report, indent=1) + "\n", encoding="utf-8")
