"""`bench`: decode+resize alone (D), the model alone (M) and end to end (E), in one run, with
the cost of each stage of the end-to-end path per image, so a regression shows where it is.

`--compare REF` runs this build and REF (another checkout, or another model file) one after
the other, A/B/A/B, each in its own process, and prints the ratios (see `bench_compare`)."""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from desktop.cli.arguments import CliError
from desktop.core.inference.catalog import resolve_model
from desktop.core.inference.decision import make_calls
from desktop.core.inference.files import content_hash
from desktop.core.inference.imaging import UnreadableImage, decode_prepared, load_prepared, read_bytes
from desktop.core.inference.model import model_threads
from desktop.core.inference.scan import SourceFile, scan_folder
from desktop.core.inference.threads import worker_threads
from desktop.core.names import readable
from desktop.core.records.session import Session

STAGE_SAMPLE = 1000  # images timed one by one per stage: enough for a stable figure, little memory


def _peak_rss_mb() -> float:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    except ImportError:  # Windows
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / 2**20


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cpu_seconds() -> float:
    """This process's CPU time, all threads: unlike wall time, barely moved by other work on the machine."""
    times = os.times()
    return times.user + times.system


def _unique(items: list[SourceFile]) -> list[SourceFile]:
    """Distinct relative names, so the store keeps a row for every repeat of a file."""
    return [SourceFile(f.path, f"{i}/{f.relative}", f.size, f.mtime) for i, f in enumerate(items)]


def _model_batch(files: list[SourceFile], spec, size: int, folder: Path) -> np.ndarray:
    """One batch of the folder's first readable images (repeated to fill it): the model's input for M."""
    one_batch = []
    for f in files:
        try:
            one_batch.append(load_prepared(f.path, spec))
        except UnreadableImage:
            continue
        if len(one_batch) == size:
            break
    if not one_batch:
        raise CliError(f"no readable images in {readable(str(folder))}")
    return np.stack((one_batch * (size // len(one_batch) + 1))[:size])


def cmd_bench(args) -> int:
    """Decode+resize alone (D), model alone (M), end to end (E), in one run, then the stages."""
    if args.compare:
        from desktop.cli.bench_compare import compare

        return compare(args)
    _set_threads(args)
    folder = Path(args.folder)
    list_s = time.perf_counter()
    files = [f for f in scan_folder(folder) if not f.problem]
    list_s = time.perf_counter() - list_s
    model = resolve_model(args.model, folder)
    if not files:
        raise CliError(f"no images in {readable(str(folder))}")
    items = (files * (args.images // len(files) + 1))[: args.images]
    spec = model.info.input
    workers = worker_threads()
    batch = _model_batch(files, spec, args.batch, folder)
    results, cpu = _measure_paths(folder, model, items, batch, args.batch, workers)
    _print_paths(model, folder, len(items), workers, args.batch, results, cpu)
    if not args.no_stages:
        _print_stages(_stages(folder, model, items[:STAGE_SAMPLE], batch, args.batch, list_s / len(files),
                              results["model"]))
    return 0


def _set_threads(args) -> None:
    """--threads and --model-threads, read by the model and the pipeline from the environment."""
    if args.threads:
        os.environ["SLIDETALLY_THREADS"] = str(args.threads)
    if args.model_threads:
        os.environ["SLIDETALLY_MODEL_THREADS"] = str(args.model_threads)


def _decode_all(items: list[SourceFile], spec, workers: int) -> None:
    """D: every image read, decoded and fit to the input, on the decode threads."""
    def one(chunk):
        for f in chunk:
            try:
                load_prepared(f.path, spec)
            except UnreadableImage:
                pass
    chunks = [items[i:i + 64] for i in range(0, len(items), 64)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, chunks))


def _infer_all(model, batch: np.ndarray, batches: int) -> None:
    """M: the same batch through the model, `batches` times."""
    for _ in range(batches):
        model.predict(batch)


def _end_to_end(folder: Path, model, items: list[SourceFile], batch_size: int) -> None:
    """E: every image classified into a throwaway store, as `classify` does."""
    with tempfile.TemporaryDirectory() as tmp:
        session = Session.open(folder, model, Path(tmp))
        session.classify_items(_unique(items), set(), None, None, batch_size)
        session.close()


def _measure_paths(folder: Path, model, items: list[SourceFile], batch: np.ndarray, batch_size: int,
                   workers: int) -> tuple[dict[str, float], dict[str, float]]:
    """Images/s of D, M and E, and the CPU seconds per image of each."""
    spec = model.info.input
    batches = len(items) // batch_size
    results, cpu = {}, {}
    for name, fn, n in (("decode+resize", lambda: _decode_all(items, spec, workers), len(items)),
                        ("model", lambda: _infer_all(model, batch, batches), batches * batch_size),
                        ("end-to-end", lambda: _end_to_end(folder, model, items, batch_size), len(items))):
        fn() if name != "end-to-end" else None  # warm-up (caches, ORT arena)
        before = _cpu_seconds()
        results[name] = n / _seconds(fn)
        cpu[name] = (_cpu_seconds() - before) / n
    return results, cpu


def _print_paths(model, folder: Path, images: int, workers: int, batch_size: int, results: dict[str, float],
                 cpu: dict[str, float]) -> None:
    """D, M and E in images/s, the limit D and M set together, peak memory and CPU per image."""
    d, m, e = results["decode+resize"], results["model"], results["end-to-end"]
    limit = 1 / (1 / d + 1 / m)
    rss = _peak_rss_mb()
    print(f"model {model.info.key} v{model.info.version}, {images} images from {folder}, {workers} decode and "
          f"{model_threads()} model thread(s) on {os.cpu_count()} cores")
    print(f"  D decode+resize  {d:8.0f} img/s")
    print(f"  M model alone    {m:8.0f} img/s (batch {batch_size})")
    print(f"  E end-to-end     {e:8.0f} img/s (read+decode+resize+infer+store)")
    print(f"  limit 1/(1/D+1/M) {limit:7.0f} img/s; E / limit = {e / limit:.2f}")
    print(f"  peak RSS {rss:.0f} MB")
    overhead = cpu["end-to-end"] - cpu["decode+resize"] - cpu["model"]
    d_us, m_us, e_us = (cpu[k] * 1e6 for k in ("decode+resize", "model", "end-to-end"))
    print(f"  CPU per image: D {d_us:.0f} µs, M {m_us:.0f} µs, E {e_us:.0f} µs (E - D - M {overhead * 1e6:+.0f} µs); "
          f"cores busy in E {cpu['end-to-end'] * e:.2f} of {os.cpu_count()}")


def _stages(folder: Path, model, sample: list[SourceFile], batch: np.ndarray, batch_size: int, list_s: float,
            m: float) -> list[tuple[str, float, str]]:
    """Seconds per image of each stage of the end-to-end path, each measured alone on one thread
    (the model on its own threads): where the time of E goes."""
    spec = model.info.input
    data = [read_bytes(f.path) for f in sample]  # warm the page cache, and the decode stage's input
    read_s = _seconds(lambda: [content_hash(read_bytes(f.path)) for f in sample]) / len(sample)

    decode_s = _seconds(lambda: _decode_each(data, spec)) / len(data)
    data.clear()
    probabilities, ood = model.predict(batch)
    chunks = [_unique(sample)[i:i + batch_size] for i in range(0, len(sample), batch_size)]
    hashes = ["0" * 32] * batch_size
    calls = []
    decide_s = _seconds(lambda: calls.extend(make_calls(model.info, c, probabilities[:len(c)],
                                                        None if ood is None else ood[:len(c)], hashes)
                                             for c in chunks)) / len(sample)
    with tempfile.TemporaryDirectory() as tmp:
        session = Session.open(folder, model, Path(tmp))

        def store():
            for c in calls:
                session.store_calls(c, set())
            session.finish_run(len(sample), False)

        store_s = _seconds(store) / len(sample)
        session.close()
    return [("list", list_s, "scan of the folder, per file"), ("read+hash", read_s, "one thread"),
            ("decode", decode_s, "decode + fit to the input, one thread"),
            ("model", 1 / m, f"{model_threads()} thread(s), batch {batch_size}"),
            ("decide", decide_s, "decision rule, calls"), ("store", store_s, "one transaction a batch, slide step, audit")]


def _decode_each(data: list[bytes], spec) -> None:
    for b in data:
        try:
            decode_prepared(b, spec)
        except UnreadableImage:
            pass


def _print_stages(stages: list[tuple[str, float, str]]) -> None:
    total = sum(s for _, s, _ in stages)
    print("  stages (each alone; µs per image):")
    for name, seconds, note in stages:
        print(f"    {name:<10} {seconds * 1e6:8.1f} µs  {seconds / total:4.0%}  {note}")
