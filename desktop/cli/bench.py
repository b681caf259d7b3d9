"""`bench`: decode+resize alone (D), the model alone (M) and end to end (E), in one run."""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from desktop.cli.arguments import CliError
from desktop.core.inference.catalog import resolve_model
from desktop.core.inference.imaging import UnreadableImage, load_prepared
from desktop.core.inference.scan import scan_folder
from desktop.core.names import readable
from desktop.core.records.session import Session


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
