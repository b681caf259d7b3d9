"""`bench --compare REF`: this build against another checkout (its own `desktop` package on
PYTHONPATH) or against another model file, run alternately A/B/A/B in fresh processes on the
same machine in one session, so a change in the machine's speed hits both; ratios A / B.

Only the lines every version of `bench` prints are read (D, M, E, limit, peak RSS), so an older
checkout without this option can be the reference."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from desktop.cli.arguments import CliError

FIGURES = {  # name: (pattern in bench's output, higher is better)
    "D img/s": (r"D decode\+resize\s+([\d.]+)", True),
    "M img/s": (r"M model alone\s+([\d.]+)", True),
    "E img/s": (r"E end-to-end\s+([\d.]+)", True),
    "limit img/s": (r"limit 1/\(1/D\+1/M\)\s+([\d.]+)", True),
    "E / limit": (r"E / limit = ([\d.]+)", True),
    "peak RSS MB": (r"peak RSS ([\d.]+) MB", False),
}
# Printed by this bench only (a reference may lack them): CPU time per image, all threads, which
# other work on the machine moves far less than it moves the img/s figures.
OPTIONAL = {
    "D CPU µs/img": (r"CPU per image: D (\d+) µs", False),
    "M CPU µs/img": (r"CPU per image: .*?M (\d+) µs", False),
    "E CPU µs/img": (r"CPU per image: .*?E (\d+) µs", False),
}
THIS_CHECKOUT = Path(__file__).resolve().parents[2]


def parse_bench(text: str) -> dict[str, float]:
    """The figures of one `bench` run's output; CliError when one is missing."""
    figures = {}
    for name, (pattern, _) in FIGURES.items():
        found = re.search(pattern, text)
        if not found:
            raise CliError(f"the reference bench printed no '{name}' figure:\n{text[-2000:]}")
        figures[name] = float(found.group(1))
    for name, (pattern, _) in OPTIONAL.items():
        found = re.search(pattern, text)
        if found:
            figures[name] = float(found.group(1))
    return figures


def _run(checkout: Path, args, model: str | None) -> dict[str, float]:
    command = [sys.executable, "-m", "desktop.cli", "bench", str(args.folder), "--images", str(args.images),
               "--batch", str(args.batch)] + (["--model", model] if model else [])
    env = dict(os.environ, PYTHONPATH=str(checkout))
    if args.threads:
        env["SLIDETALLY_THREADS"] = str(args.threads)
    if args.model_threads:
        env["SLIDETALLY_MODEL_THREADS"] = str(args.model_threads)
    if checkout == THIS_CHECKOUT:
        command.append("--no-stages")  # an older checkout knows only the options above
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, encoding="utf-8",
                          errors="replace", check=False)
    if done.returncode != 0:
        raise CliError(f"bench failed in {checkout} (exit {done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
    return parse_bench(done.stdout)


def _sides(args) -> list[tuple[str, Path, str | None]]:
    """(label, checkout, model) of A (this build) and B (the reference)."""
    ref = Path(args.compare)
    if ref.suffix == ".onnx":
        if not ref.is_file():
            raise CliError(f"no model file {ref}")
        return [("A this build", THIS_CHECKOUT, args.model), (f"B model {ref.name}", THIS_CHECKOUT, str(ref.resolve()))]
    if not ((ref / "desktop" / "cli").is_dir() or (ref / "desktop" / "cli.py").is_file()):  # cli.py: before 0.2
        raise CliError(f"{ref} is neither a checkout of SlideTally (no desktop/cli in it) nor an .onnx model file")
    model = str(Path(args.model).resolve()) if args.model and Path(args.model).suffix == ".onnx" else args.model
    return [("A this build", THIS_CHECKOUT, model), (f"B {ref.resolve()}", ref.resolve(), model)]


def compare(args) -> int:
    sides = _sides(args)
    rounds = max(1, args.rounds)
    runs: list[list[dict[str, float]]] = [[], []]
    print(f"compare, {rounds} round(s) of A then B, {args.images} images, batch {args.batch}:")
    for r in range(rounds):
        for i, (label, checkout, model) in enumerate(sides):
            figures = _run(checkout, args, model)
            runs[i].append(figures)
            print(f"  run {2 * r + i + 1}: {label}: " + ", ".join(f"{k} {v:g}" for k, v in figures.items()), flush=True)
    print("ratios A / B per round, and their median:")
    for name in [*FIGURES, *(k for k in OPTIONAL if all(k in r for side in runs for r in side))]:
        ratios = [a[name] / b[name] if b[name] else float("nan") for a, b in zip(*runs)]
        print(f"  {name:<12} " + "  ".join(f"{x:6.3f}" for x in ratios) + f"   median {statistics.median(ratios):.3f}")
    return 0
