"""Load an ONNX model that honours the SlideTally contract (its metadata: model_info.py), check
its graph and outputs, and run it.

A damaged, foreign or incompatible file raises `ModelError` naming the file and the
problem; the app then lists the other models and says which one it skipped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from desktop.core.errors import ModelError
from desktop.core.inference.model_info import ModelInfo, parse_metadata
from desktop.core.inference.threads import MAX_THREADS, worker_threads

if TYPE_CHECKING:  # loaded only when a model is (telemetry is switched off first)
    import onnxruntime as ort

log = logging.getLogger(__name__)
OUTPUT_RANKS = {"probabilities": 2, "ood_score": 1, "features": 2}  # the contract's outputs: [N, C], [N], [N, F]

def model_threads() -> int:
    """ONNX Runtime's threads: as many as `worker_threads`, unless SLIDETALLY_MODEL_THREADS gives a
    number (the decoders keep theirs: `bench --model-threads` measures the split); `auto` measures
    it on each run's first batches (threads.py)."""
    wanted = os.environ.get("SLIDETALLY_MODEL_THREADS", "")
    return min(MAX_THREADS, int(wanted)) if wanted.isdigit() and int(wanted) > 0 else worker_threads()


MAX_MODEL_BYTES = 512 * 2**20
FRONT_END_AFTER = 10_000  # images predicted before the front end is split off (see Model.start_front_end)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One inference thread per core; decoding runs in its own threads beside it.
    options.intra_op_num_threads = threads or model_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if os.environ.get("SLIDETALLY_ORT_SPIN", "0") != "1":
        # Idle inference threads would otherwise spin and steal the cores the decoders need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


GUARD_SCORE = "colour_guard_score"  # a key of `feed` that is not the graph's: the colour guard's score


class Model:
    """An ONNX Runtime session with the model's contract attached."""

    def __init__(self, path: Path, threads: int | None = None, *, split_front_end: bool = True) -> None:
        """`split_front_end=False` keeps the file's whole graph serving: the split imports onnx, whose
        import holds the GIL for seconds (a 5.4 s pause of every other thread measured under load), so
        the window, which must answer within 100 ms, never splits."""
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        try:
            size = path.stat().st_size
            if size > MAX_MODEL_BYTES:  # checked before the file is read into memory
                raise ModelError(f"{path.name} is {size / 2**20:.0f} MB; a model may be at most "
                                 f"{MAX_MODEL_BYTES // 2**20} MB")
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read the model file {path.name} ({exc.strerror or exc})") from exc
        try:
            whole = ort.InferenceSession(data, session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own types for damaged files
            raise ModelError(f"{path.name} is damaged or not an ONNX model ({str(exc).splitlines()[0][:160]})") from exc
        self.threads = threads or model_threads()  # ONNX Runtime's threads unless predict is told otherwise
        self._sessions = {(False, self.threads): whole}  # (split, threads): session, made when asked for
        self._graphs = {False: data}  # the file's graph, and (True) the one with its front end split off
        self._background = None  # front_end.Background once the split graph serves
        self._split_started = not split_front_end
        self._predicted = 0  # images, for when the split front end pays for itself
        self._served_lock = threading.Lock()
        meta = whole.get_modelmeta().custom_metadata_map
        self.info = parse_metadata(meta, path, hashlib.sha256(data).hexdigest())
        self._check_graph()
        log.info("model loaded: %s v%s (%s, SHA-256 %s)", self.info.key, self.info.version, path, self.info.sha256[:16])

    def _check_graph(self) -> None:
        name = self.info.path.name
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != "image" or inputs[0].type != "tensor(uint8)":
            raise ModelError(f"{name}: the model must take one uint8 input named 'image'")
        shape = inputs[0].shape
        if len(shape) != 4 or shape[3] != 3 or list(shape[1:3]) != [self.info.input.height, self.info.input.width]:
            raise ModelError(f"{name}: input shape {shape} does not match input_size in its metadata")
        outputs = {o.name: o for o in self.session.get_outputs()}
        if "probabilities" not in outputs:
            raise ModelError(f"{name}: the model has no 'probabilities' output")
        for output, rank in OUTPUT_RANKS.items():
            declared = outputs[output].shape if output in outputs else None
            if declared is not None and len(declared) != rank:
                raise ModelError(f"{name}: output '{output}' has {len(declared)} dimension(s), the contract says {rank}")
        n = outputs["probabilities"].shape[-1]
        if isinstance(n, int) and n != len(self.info.classes):
            raise ModelError(f"{name}: {n} outputs but {len(self.info.classes)} classes in its metadata")
        self.has_ood = "ood_score" in outputs and self.info.ood_threshold is not None
        self.has_features = "features" in outputs
        self._outputs = ["probabilities", "ood_score"] if self.has_ood else ["probabilities"]
        self._check_outputs([o for o in OUTPUT_RANKS if o in outputs])

    def _test_images(self) -> np.ndarray:
        """Black, white, grey and noise at the model's input size."""
        spec = self.info.input
        return np.stack([np.zeros((spec.height, spec.width, 3), np.uint8), np.full((spec.height, spec.width, 3), 255, np.uint8),
                         np.full((spec.height, spec.width, 3), 128, np.uint8),
                         np.random.default_rng(0).integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)])

    def _check_outputs(self, names: list[str]) -> None:
        """Run every contract output on a few synthetic images (black, white, grey, noise):
        a model that gives the wrong shape, NaN or infinity, or probabilities that are not a
        distribution is refused at load, not discovered in a technician's counts."""
        name, n = self.info.path.name, 4
        batch = self._test_images()
        try:
            results = dict(zip(names, self.session.run(names, {"image": batch})))
        except Exception as exc:  # ORT raises its own types for graphs that cannot run
            raise ModelError(f"{name} fails on test images ({str(exc).splitlines()[0][:160]})") from exc
        for output, value in results.items():
            value = np.asarray(value)
            want = (n, len(self.info.classes)) if output == "probabilities" else (n,) if output == "ood_score" else None
            if value.ndim != OUTPUT_RANKS[output] or value.shape[0] != n or (want and value.shape != want):
                raise ModelError(f"{name}: output '{output}' has shape {list(value.shape)} for {n} images")
            if not np.isfinite(value).all():
                raise ModelError(f"{name}: output '{output}' gives NaN or infinity on test images")
        p = results["probabilities"].astype(np.float64)
        if p.min() < -1e-4 or p.max() > 1 + 1e-4 or np.abs(p.sum(axis=1) - 1).max() > 1e-3:
            raise ModelError(f"{name}: output 'probabilities' is not a probability distribution (rows sum to "
                             f"{p.sum(axis=1).min():.3g}-{p.sum(axis=1).max():.3g}, not 1)")

    def start_front_end(self) -> None:
        """Begin splitting off the white-balance front end (front_end.py: measured on the decoding
        threads, proved equal to the file's graph on the test images), in the background: the file's
        graph serves meanwhile. Importing onnx for it costs ~1 s of CPU once, repaid after some
        10,000 images, so predict_feed starts it only after FRONT_END_AFTER images."""
        with self._served_lock:
            if not self._split_started:
                self._split_started = True
                threading.Thread(target=self._split_front_end, name="front-end").start()  # not a daemon: exit waits

    def _split_front_end(self) -> None:
        from desktop.core.inference.front_end import served_session

        try:
            session, background, graph = served_session(self._graphs[False], self.session, session_options(self.threads),
                                                        self._outputs, self._test_images())
        except Exception as exc:  # noqa: BLE001 - the file's own graph serves on; nothing is lost
            log.warning("%s: the white-balance front end stays in the graph (%s)", self.info.path.name, exc)
            return
        if background is not None:
            with self._served_lock:
                self._graphs[True] = graph
                self._sessions[(True, self.threads)] = session
                self._background = background
                # The file's graph is no longer what predict runs: its memory goes before the split
                # graph's first full batch claims its own (made again if asked for).
                for key in [k for k in self._sessions if not k[0]]:
                    del self._sessions[key]

    @property
    def session(self) -> ort.InferenceSession:
        """The ONNX Runtime session of the model file's own graph, at the model's threads."""
        return self._session(False, self.threads)

    def _session(self, split: bool, threads: int) -> ort.InferenceSession:
        with self._served_lock:
            if (split, threads) not in self._sessions:
                import onnxruntime as ort

                self._sessions[(split, threads)] = ort.InferenceSession(
                    self._graphs[split], session_options(threads), providers=["CPUExecutionProvider"])
            return self._sessions[(split, threads)]

    def feed(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The inputs of the served graph for a uint8 batch, and the colour guard's score where the model
        declares one (made on the decoding threads, beside the decoding, not on the model's)."""
        feed = {"image": images}
        if self.info.colour_guard is not None and self.has_ood:
            feed[GUARD_SCORE] = self.info.colour_guard.score(images)
        background = self._background
        if background is None:
            return feed
        from desktop.core.inference.front_end import FED

        return {**feed, FED: background.measure(images)}

    def predict_feed(self, feed: dict[str, np.ndarray], threads: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities [N, C] and Unfamiliar scores [N] (or None) for what `feed` gave, on
        `threads` of ONNX Runtime (default: the model's)."""
        graph_feed = {k: v for k, v in feed.items() if k != GUARD_SCORE}
        result = self._session(len(graph_feed) > 1, threads or self.threads).run(self._outputs, graph_feed)
        self._predicted += len(feed["image"])
        if self._predicted >= FRONT_END_AFTER and not self._split_started:
            self.start_front_end()
        return result[0], self._with_colour_guard(feed, result[1] if self.has_ood else None)

    def _with_colour_guard(self, feed: dict[str, np.ndarray], ood: np.ndarray | None) -> np.ndarray | None:
        """The Unfamiliar score with the model's colour guard folded in (patch models that declare one):
        raised to the guard's score, in units of the model's own threshold, where the guard finds it stranger."""
        guard = self.info.colour_guard
        if guard is None or ood is None or self.info.ood_threshold is None:
            return ood
        score = feed[GUARD_SCORE] if GUARD_SCORE in feed else guard.score(feed["image"])
        return np.maximum(np.asarray(ood, np.float32), self.info.ood_threshold * score)

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities [N, C] and Unfamiliar scores [N] (or None) for a uint8 batch."""
        return self.predict_feed(self.feed(images))

    def probabilities_in_batches(self, images: np.ndarray, batch: int) -> np.ndarray:
        """Probabilities [N, C] of a large uint8 array, `batch` images at a time (for the scripts
        that measure a model on a whole split; memory stays bounded)."""
        return np.concatenate([self.predict(images[i:i + batch])[0] for i in range(0, len(images), batch)])

    def predict_with_features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Probabilities, Unfamiliar scores and the pooled `features` (for verification and adaptation)."""
        session = self.session if self.has_features else self._session_with_features()
        result = session.run(self._outputs + ["features"], {"image": images})
        return result[0], self._with_colour_guard({"image": images}, result[1] if self.has_ood else None), result[-1]

    def _session_with_features(self):
        """A model exported before `features` was in the contract gets it by graph surgery, in memory."""
        if getattr(self, "_features_session", None) is None:
            import onnx
            import onnxruntime as ort

            from desktop.core.inference.head import GraftError, with_features_output

            try:
                proto = with_features_output(onnx.load(str(self.info.path)))
            except GraftError as exc:
                raise ModelError(f"{self.info.path.name} has no 'features' output and none can be added: {exc}") from exc
            self._features_session = ort.InferenceSession(proto.SerializeToString(), session_options(),
                                                          providers=["CPUExecutionProvider"])
        return self._features_session


def find_model_files(*folders: Path) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        if folder and Path(folder).is_dir():
            files += sorted(Path(folder).glob("*.onnx"))
    return files


def discover_models(*folders: Path) -> tuple[list[ModelInfo], list[str]]:
    """Every usable model in the folders, and a plain message for each file that is not. In the user
    models folder only what SlideTally installed is loaded (`registry`); no model outside the shipped
    folder may pass for a shipped one."""
    from desktop.core.inference.registry import installed, why_impostor, why_not_installed
    from desktop.core.resources import resource, user_models_dir

    shipped_folder, user_folder = resource("models").resolve(), user_models_dir().resolve()
    folders = folders or (resource("models"), user_models_dir())
    infos, problems = [], []
    registry = installed(user_folder)  # read once: only the user folder's models need it
    for path in find_model_files(*folders):
        try:
            info = Model(path, threads=1).info
        except ModelError as exc:
            problems.append(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - one bad file must never hide the good ones
            problems.append(f"{path.name} could not be loaded ({type(exc).__name__}: {str(exc)[:160]})")
            continue
        if path.parent.resolve() == user_folder:
            problem = why_not_installed(path, info.sha256, registry)
            if problem:
                problems.append(problem)
                continue
        infos.append(info)
    shipped = [i for i in infos if i.path.parent.resolve() == shipped_folder]
    kept = []
    for info in infos:
        problem = "" if info in shipped else why_impostor(info, shipped)
        if problem:
            problems.append(problem)
        else:
            kept.append(info)
    return _without_unsound_site_models(kept, problems)


def _without_unsound_site_models(infos: list[ModelInfo], problems: list[str]) -> tuple[list[ModelInfo], list[str]]:
    """A site model is listed only if it names an installed base by SHA-256 and its figures are in range."""
    from desktop.core.inference.site_check import check_site_info

    bases = {i.sha256 for i in infos if not i.site}
    kept = []
    for info in infos:
        try:
            if info.site:
                check_site_info(info, bases)
            kept.append(info)
        except ModelError as exc:
            problems.append(f"{info.path.name}: {exc}")
    return kept, problems
