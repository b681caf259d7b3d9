"""`slidetally-train blood|idc --data DIR --out DIR`: one resumable training run.
`slidetally-train adapt …`: a site model, every layer fine-tuned (see trainer/adapt_cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DATA = {"blood": "../shared/data/pbc", "idc": "../shared/data/idc"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["adapt"]:  # site adaptation has its own arguments
        from trainer.adapt_cli import main as adapt_main

        return adapt_main(argv[1:])
    parser = argparse.ArgumentParser(prog="slidetally-train", description=__doc__)
    parser.add_argument("task", choices=("blood", "idc"))
    parser.add_argument("--data", type=Path, help="labelled image folder (default: ../shared/data/<task>)")
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumes if it exists, same recipe only)")
    parser.add_argument("--epochs", type=int, help="epochs for our model (default: the task's)")
    parser.add_argument("--seed-epochs", type=int, help="maximum epochs for the reference model")
    parser.add_argument("--limit", type=int, help="images per class (blood) or patients (idc), for quick runs")
    parser.add_argument("--skip-seed", action="store_true", help="do not train the reference model")
    parser.add_argument("--external", type=Path, default=Path("../shared/data/external_bccd"),
                        help="another lab's images, for evaluation only (blood)")
    parser.add_argument("--ship", type=Path, help="copy model, card and figures here (e.g. resources/models)")
    parser.add_argument("--widths", help="channel widths of our model, e.g. 48,96,192,320 (default: the task's)")
    parser.add_argument("--scale-min", type=float, help="strongest zoom-in of the scale augmentation (e.g. 0.5)")
    parser.add_argument("--stem-stride", type=int, choices=(1, 2), help="stride of the first convolution (default: the task's)")
    parser.add_argument("--ema", type=float, help="weight-averaging momentum, e.g. 0.998 (0 = off; default: the task's)")
    parser.add_argument("--hed-sigma", type=float, help="strength of the stain (HED) jitter (default: the task's)")
    parser.add_argument("--notes", default="", help="a line for the lab book")
    parser.add_argument("--no-lab-book", action="store_true", help="do not append to trainer/lab_book.jsonl")
    args = parser.parse_args(argv)
    data = args.data or Path(DEFAULT_DATA[args.task])
    if not data.is_dir():
        parser.error(f"data folder not found: {data}")
    from trainer.recipe import RecipeChanged, resolve  # TensorFlow loads only in train, after the arguments are checked
    from trainer.train import run

    recipe = resolve(args.task, epochs=args.epochs, seed_epochs=args.seed_epochs, limit=args.limit,
                     skip_seed=args.skip_seed, widths=tuple(int(w) for w in args.widths.split(",")) if args.widths else None,
                     scale_min=args.scale_min, stem_stride=args.stem_stride, ema=args.ema, hed_sigma=args.hed_sigma)
    try:
        run(recipe, data, args.out, external=args.external, ship=args.ship, lab_book_row=not args.no_lab_book,
            notes=args.notes)
    except RecipeChanged as exc:
        print(f"slidetally-train: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
