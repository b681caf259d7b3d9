"""`slidetally-train adapt`: fine-tune every layer of a shipped model on a lab's verified cells.

    slidetally-train adapt --base blood-pbc8 --verified DIR --site north-lab --out north.onnx \
        --approved-by "Dr. Lee" [--report north.json] [--accept-loss REASON]
    slidetally-train adapt --base blood-pbc8 --sessions DATA_DIR [--since 2026-11-01] --site north-lab \
        --candidate north.candidate.onnx --progress-json      # what Tools → Adapt runs

`--verified` takes DIR/<specimen>/<class key>/<image> (cross-validation grouped by specimen) or
DIR/<class key>/<image> (no specimens known: the report says the estimate is optimistic).
Exit codes: 0 written; 2 a clear refusal (too few cells, output path, approver, a loss not
accepted); 130 cancelled. Nothing is written unless everything succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

os.environ["ORT_DISABLE_TELEMETRY"] = "1"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slidetally-train adapt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="the base model: a key (e.g. blood-pbc8) or an .onnx file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--verified", type=Path, help="DIR/<specimen>/<class key>/<image> or DIR/<class key>/<image>")
    source.add_argument("--sessions", type=Path, metavar="DATA_DIR", help="the data folder: its signed-off sessions")
    p.add_argument("--since", help="with --sessions: only sessions signed on or after this date (2026-11-01)")
    p.add_argument("--site", required=True, help="the lab's short name")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, help="the site model to write (needs --approved-by)")
    out.add_argument("--candidate", type=Path, help="write an unapproved candidate (Tools → Adapt approves it)")
    p.add_argument("--approved-by", default="", help="the lab director approving the site model")
    p.add_argument("--accept-loss", metavar="REASON", help="install even if worse than the base model, for this reason")
    p.add_argument("--report", type=Path, help="write the grouped cross-validation before/after as JSON")
    p.add_argument("--unlabelled", type=Path, metavar="DIR",
                   help="the lab's classified, never verified cells (DIR/<specimen>/<image>): one round of pseudo-labels "
                        "(with --sessions, the cells of its sessions not signed off are used too)")
    p.add_argument("--models-dir", type=Path, help="the user models folder (default: SlideTally's)")
    p.add_argument("--progress-json", action="store_true", help="print progress as JSON lines (for the GUI)")
    p.add_argument("--no-lab-book", action="store_true",
                   help="do not append a row to the lab's site lab book (site_lab_book.jsonl in its data folder)")
    p.add_argument("--max-epochs", type=int, help=argparse.SUPPRESS)  # tests: a tiny run
    p.add_argument("--pseudo-epochs", type=int, help=argparse.SUPPRESS)
    p.add_argument("--min-steps", type=int, help=argparse.SUPPRESS)
    return p


def _fail(message: str) -> int:
    print(f"slidetally-train adapt: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.out and not args.approved_by.strip():
        return _fail("--out installs the site model: give --approved-by (or write a --candidate)")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("slidetally-train adapt: cancelled; nothing was written", file=sys.stderr)
        return 130


def _run(args) -> int:
    from desktop.core.errors import SlideTallyError
    from desktop.core.inference.model import Model, find_model_files
    from desktop.core.resources import resource, user_models_dir

    shipped = resource("models")
    models_dir = args.models_dir or user_models_dir()
    known = find_model_files(shipped, models_dir)
    base_path = Path(args.base) if args.base.endswith(".onnx") else next(
        (p for p in known if p.stem == args.base), None)
    if base_path is None or not base_path.is_file():
        return _fail(f"no model {args.base!r} (known: {', '.join(p.stem for p in known) or 'none'})")
    try:
        base = Model(base_path, threads=1)
        if "site" in dict(base.session.get_modelmeta().custom_metadata_map):
            return _fail(f"{base_path.stem} is a site model; adapt from the model it was made from")
        from desktop.core.lab.site_guard import check_destination
        if args.out:
            check_destination(args.out, known + [base_path], [shipped])
        elif args.candidate and args.candidate.exists():
            return _fail(f"{args.candidate} exists; a candidate is written to a new file")
        _check_outputs(args, known + [base_path], shipped)
        site, source = _cells(args, base)
    except (SlideTallyError, ValueError) as exc:
        return _fail(str(exc))
    return _adapt(args, base, site, source, known, shipped, models_dir)


def _check_outputs(args, models: list[Path], shipped: Path) -> None:
    """The one destination check (desktop/outlets/destinations.py) for the report, the candidate and its card."""
    from desktop.outlets.destinations import check_destinations

    target = args.out or args.candidate
    outputs = {"--report": args.report, ("--out" if args.out else "--candidate"): target,
               "the site model's card": target.with_suffix(".card.md") if target else None}
    check_destinations({name: path for name, path in outputs.items() if path is not None}, analysed=None,
                       data_dir=args.sessions, model_files=models, model_folders=[shipped],
                       inputs=[args.verified] if args.verified else [])


def _cells(args, base):
    from trainer.site_data import from_folder, load_cells

    if args.verified:
        site = from_folder(args.verified, base.info)
        return site, {"verified_folder": str(args.verified.resolve()), "cells": int(len(site.labels))}
    from desktop.core.lab.site_cells import cells_from_sessions, signed_sessions, who_signed

    sessions = signed_sessions(args.sessions, base.info, args.since)
    if sessions.altered:
        print(f"warning: {sessions.altered_note()}", file=sys.stderr)
    cells = cells_from_sessions(sessions, base.info)
    if not cells:
        raise ValueError(f"no signed-off sessions with verified cells of {base.info.key} in {args.sessions}")
    signed = who_signed(sessions)
    site = load_cells(cells, base.info, signers=frozenset(signed["signed_by"]))
    return site, {"sessions": [s.name for s in sessions], "since": args.since or "", "cells": int(len(site.labels)),
                  **signed}


SITE_LAB_BOOK = "site_lab_book.jsonl"


def _unlabelled(args, base) -> np.ndarray:
    """The lab's unlabelled cells as the model's input: --unlabelled DIR, and with --sessions the cells of
    its sessions of this model not signed off (classified, never verified)."""
    from desktop.core.inference.imaging import IMAGE_EXTENSIONS, UnreadableImage, load_prepared
    from desktop.core.lab.site_cells import unsigned_session_files

    files = []
    if args.unlabelled:
        if not args.unlabelled.is_dir():
            raise ValueError(f"--unlabelled {args.unlabelled} is not a folder")
        files += sorted(p for p in args.unlabelled.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if args.sessions:
        files += unsigned_session_files(args.sessions, base.info)
    images = []
    for path in dict.fromkeys(files):
        try:
            images.append(load_prepared(path, base.info.input))
        except (UnreadableImage, OSError):
            continue
    spec = base.info.input
    return np.stack(images) if images else np.zeros((0, spec.height, spec.width, 3), np.uint8)


def _progress(args):
    start = time.perf_counter()

    def report(stage: str, fraction: float) -> None:
        elapsed = time.perf_counter() - start
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.02 else None
        if args.progress_json:
            print(json.dumps({"stage": stage, "fraction": round(fraction, 4),
                              "eta_s": None if eta is None else round(eta)}), flush=True)
        else:
            print(f"\r{stage}: {fraction:.0%}" + (f", about {eta:.0f} s left" if eta else "") + " " * 8,
                  end="", file=sys.stderr, flush=True)
    return report


def _adapt(args, base, site, source, known, shipped, models_dir) -> int:
    import onnx

    from desktop.core.errors import SlideTallyError
    from desktop.core.lab.adaptation import AdaptationRefused
    from desktop.core.lab.site_install import install_site_model
    from desktop.core.lab.site_model import next_number, slug
    from trainer import adapt, lab_book

    info = base.info
    for problem in site.problems[:10]:
        print(f"warning: skipped {problem}", file=sys.stderr)
    kwargs = {k: v for k, v in (("max_epochs", args.max_epochs), ("min_steps", args.min_steps),
                                ("pseudo_epochs", args.pseudo_epochs)) if v}
    unlabelled = _unlabelled(args, base)
    if len(unlabelled):
        source = {**source, "unlabelled_cells": int(len(unlabelled))}
    try:
        result = adapt.deep_adapt(onnx.load(str(info.path)), site, info.class_keys,
                                  (info.review_threshold, info.ood_threshold, info.decision_threshold),
                                  progress=_progress(args), unlabelled=unlabelled if len(unlabelled) else None,
                                  **kwargs)
    except AdaptationRefused as exc:
        return _fail(str(exc))
    if not args.progress_json:
        print(file=sys.stderr)
    name = slug(args.site)
    target = args.out or args.candidate
    number = next_number(models_dir, info.key, name)
    meta = adapt.site_metadata(base, result, name, number, "", source)
    proto = adapt.with_metadata(result.proto, meta)
    staging = target.with_name(f".{target.name}.candidate")
    staging.parent.mkdir(parents=True, exist_ok=True)
    staging.write_bytes(proto.SerializeToString())
    try:
        if args.out:
            try:
                install_site_model(staging, args.out, args.approved_by, known, [shipped], args.accept_loss)
            except SlideTallyError as exc:
                return _fail(str(exc))
        else:
            staging.replace(args.candidate)
    finally:
        staging.unlink(missing_ok=True)
    report = result.report()
    if args.report:
        args.report.write_text(json.dumps(report, indent=1), encoding="utf-8")
    _write_card(target, info, result, name, source)
    if not args.no_lab_book:  # the lab's record, in its data folder: the trainer's own lab book is for its runs
        lab_book.append({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "task": f"site-adapt:{info.key}",
                         "name": target.stem, "epochs": result.epochs, "val_accuracy_clean": round(result.after.accuracy, 4),
                         "val_balanced_accuracy": round(result.after.balanced_accuracy, 4),
                         "minutes": result.seconds / 60, "git_sha": lab_book.git_sha(), "site": report,
                         "notes": f"deep site adaptation ({result.folds}); val = site cross-validated"},
                        book=(args.sessions or models_dir.parent) / SITE_LAB_BOOK)
    if args.progress_json:
        print(json.dumps({"done": str(target), "report": report}), flush=True)
    else:
        _print_summary(target, result)
    return 0


def _print_summary(target: Path, result) -> None:
    print(f"site model written: {target} ({result.seconds:.0f} s, {result.epochs} epochs)")
    print(f"site cross-validated ({result.folds}):")
    print(f"{'':<8} {'accuracy':>9} {'balanced':>9} {'accepted':>9} {'right among accepted':>21}")
    for label, f in (("before", result.before), ("after", result.after)):
        print(f"{label:<8} {f.accuracy:>9.3f} {f.balanced_accuracy:>9.3f} {f.accepted_share:>9.3f} "
              f"{f.accepted_accuracy:>21.3f}")
    if result.after.accuracy_interval:
        print(f"accuracy after: {result.after.interval_text()}")
    if result.review_classes:
        print(f"fewer than 10 verified cells (the site model's calls of these go to Review): "
              f"{', '.join(result.review_classes)}")
    for note in result.notes:
        print(f"note: {note}")


def _write_card(target: Path, info, result, site: str, source: dict) -> None:
    """The site model's card: what it was fitted on and its grouped cross-validated figures."""
    rows = "\n".join(f"| {label} | {f.accuracy:.3f} | {f.balanced_accuracy:.3f} | {f.accepted_share:.0%} | "
                     f"{f.accepted_accuracy:.1%} |" for label, f in (("base model", result.before),
                                                                      ("site model", result.after)))
    counts = ", ".join(f"{k} {n}" for k, n in result.cells_per_class.items())
    text = (f"# {info.display_name} — adapted to {site} (whole network)\n\n"
            f"Base: {info.key} {info.version} (SHA-256 {info.sha256}). Every layer fine-tuned for {result.epochs} "
            f"epochs on {result.after.n} verified cells ({counts}) from {result.specimens} specimen(s); source: "
            f"{json.dumps(source)}.\n\n## Site adaptation\n\nSite cross-validated ({result.folds}); the epochs, "
            f"temperature and review threshold that score a fold were chosen on the other folds.\n\n"
            f"| model | accuracy | balanced accuracy | accepted | right among accepted |\n|---|---|---|---|---|\n"
            f"{rows}\n"
            + (f"\nAccuracy of the site model: 95% interval {result.after.interval_text()}.\n"
               if result.after.accuracy_interval else "")
            + f"\nEpochs: {result.epoch_rule}."
            + (f" Unlabelled cells: {result.pseudo_labelled} of {result.unlabelled} pseudo-labelled for the final model."
               if result.unlabelled else "") + "\n"
            + "".join(f"\nNote: {n}\n" for n in result.notes))
    target.with_suffix(".card.md").write_text(text, encoding="utf-8")
