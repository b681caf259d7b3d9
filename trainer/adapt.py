"""Deep site adaptation: every layer of a shipped model fine-tuned on a lab's verified cells.

The protocol, in the order it runs:
1. Rebuild the base model in Keras from its own ONNX file (`trainer/rebuild.py`), proved equal.
2. Grouped cross-validation (folds by specimen; byte-identical images one group): each fold
   fine-tunes a fresh copy and records its held-out logits at every checkpoint.
3. The number of epochs, the temperature and the review threshold that score a fold are chosen
   on the *other* folds only, so no reported cell had a say in the settings it is scored with.
4. The site model: a fresh copy fine-tuned on every cell for the epochs the folds chose; its
   Unfamiliar statistics refitted; written back into the base graph; proved against Keras.

A head on frozen features (`slidetally-cli adapt`) cannot move the features themselves; this can.

This file runs the protocol and writes the site model; one fine-tune (and its pseudo-label round) is
`trainer/adapt_fine_tune.py`, the folds and the settings they choose are `trainer/adapt_folds.py`.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import onnx
import tensorflow as tf

from desktop import __version__
from desktop.core.inference.contract import DEEP, ModelMetadata, SiteFit, SiteProvenance, site_model_metadata, write_props
from desktop.core.inference.model import Model
from desktop.core.lab.adaptation import RuleFigures, check_enough, rare_classes, rule_figures
from trainer import export
from trainer.adapt_fine_tune import (
    AUGMENTATION,
    CHECKPOINTS,
    LEARNING_RATE,
    MIN_STEPS_PER_EPOCH,
    PSEUDO_EPOCHS,
    Cancelled,
    Progress,
    _fine_tune,
    _outputs,
    _Ticks,
)
from trainer.adapt_folds import (
    EPOCH_RULE,
    FOLDS,
    _cross_validate,
    _final_settings,
    _HeldOut,
    _out_of_fold_figures,
    _Plan,
    _plan,
    _Settings,
    fit_unfamiliar,
    grouped_folds,
    longest_within_one_se,
)
from trainer.rebuild import Rebuilt, keras_logits, onnx_outputs, prove_rebuild, rebuild, write_back
from trainer.site_data import SiteArrays


@dataclass(frozen=True)
class DeepAdaptation:
    proto: onnx.ModelProto  # not yet carrying the site metadata
    before: RuleFigures  # the base model on every cell, with its own thresholds
    after: RuleFigures  # out-of-fold, grouped: what other specimens of this lab can expect
    epochs: int
    temperature: float
    review_threshold: float
    ood_threshold: float
    folds: str  # how the folds were made, in words
    grouped_by_specimen: bool
    specimens: int
    cells_per_class: dict[str, int]
    seconds: float
    parity: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    soup: onnx.ModelProto | None = None  # experiment: the final and fold models' weights averaged
    review_classes: list[str] = field(default_factory=list)  # fewer than 10 verified cells: calls go to Review
    pseudo_labelled: int = 0  # unlabelled cells the final model also learned from
    unlabelled: int = 0  # unlabelled cells offered
    epoch_rule: str = ""

    def report(self) -> dict:
        """The `--report` JSON: before/after from the grouped cross-validation."""
        keys = ("accuracy", "balanced_accuracy", "accepted_share", "accepted_accuracy")

        def figure(value: float) -> float | None:  # none accepted: no accuracy among them (JSON has no NaN)
            return None if np.isnan(value) else round(float(value), 4)

        after = {k: figure(getattr(self.after, k)) for k in keys}
        if self.after.accuracy_interval is not None:
            after["accuracy_interval"] = [round(float(v), 4) for v in self.after.accuracy_interval]
        return {"before": {k: figure(getattr(self.before, k)) for k in keys}, "after": after,
                "review_classes": self.review_classes, "epoch_rule": self.epoch_rule,
                "unlabelled": {"offered": self.unlabelled, "pseudo_labelled": self.pseudo_labelled},
                "specimens": self.specimens, "cells": self.after.n, "grouped_by_specimen": self.grouped_by_specimen,
                "estimate": "site cross-validated" + ("" if self.grouped_by_specimen else
                                                      " (no specimens known: optimistic)"),
                "folds": self.folds, "epochs": self.epochs, "method": "deep: every layer fine-tuned",
                "seconds": round(self.seconds, 1), "notes": self.notes}


def deep_adapt(base: onnx.ModelProto, site: SiteArrays, class_keys: list[str], base_thresholds: tuple,
               progress: Progress | None = None, cancel: threading.Event | None = None,
               folds: int = FOLDS, max_epochs: int = CHECKPOINTS[-1],
               min_steps: int = MIN_STEPS_PER_EPOCH, soup: bool = False,
               unlabelled: np.ndarray | None = None, pseudo_epochs: int = PSEUDO_EPOCHS) -> DeepAdaptation:
    """Cross-validate, then fit on every cell (see the module docstring).
    `base_thresholds`: the base model's (review, ood, decision) thresholds, for the "before" figures.
    `unlabelled`: the lab's classified, never verified cells (uint8 images), for one pseudo-label round."""
    start = time.perf_counter()
    counts = check_enough(site.labels, class_keys)
    n_classes = len(class_keys)
    images, labels = site.images, site.labels
    prove_rebuild(rebuild(base), images[:64])
    before = _base_figures(base, images, labels, base_thresholds)
    plan = _plan(site, folds, max_epochs, unlabelled, pseudo_epochs)
    ticks = _Ticks(progress, sum(plan.steps(int((plan.fold_of != f).sum()), min_steps) for f in range(plan.k))
                   + plan.steps(len(images), min_steps))
    held = _cross_validate(base, images, labels, n_classes, plan, ticks, cancel, min_steps, soup)
    rare = tuple(class_keys.index(c) for c in rare_classes(counts))  # too few verified cells: calls to Review
    after = _out_of_fold_figures(held, plan, labels, n_classes, rare, site.groups)
    chosen = _final_settings(held, plan, labels, n_classes)
    ticks.say("final model")
    final = _final_model(base, images, labels, n_classes, plan, chosen, ticks, cancel, min_steps)
    soup_proto = _soup(final.rebuilt, held, plan, chosen, images, labels, n_classes) if soup else None
    if progress:
        progress("done", 1.0)
    notes = _notes(plan.grouped, before, after, rare, class_keys)
    folds_text = (f"{plan.k}-fold grouped by specimen ({site.specimens} specimens)" if plan.grouped
                  else f"{plan.k}-fold by image (no specimens known)")
    return DeepAdaptation(final.proto, before, after, chosen.epochs, chosen.temperature, chosen.review_threshold,
                          chosen.ood_threshold, folds_text, plan.grouped, site.specimens, counts,
                          time.perf_counter() - start, final.parity, notes, soup_proto, [class_keys[i] for i in rare],
                          final.pseudo_labelled, plan.offered,
                          EPOCH_RULE + (f"; the longest schedule is {plan.stage1} epochs then one round of pseudo-labels "
                                        f"on the lab's unlabelled cells ({plan.extra} more)" if plan.extra else ""))


def _base_figures(base: onnx.ModelProto, images: np.ndarray, labels: np.ndarray, base_thresholds: tuple) -> RuleFigures:
    """The base model on every cell, with its own (review, ood, decision) thresholds."""
    base_out = onnx_outputs(base, images)
    review0, ood0, decision0 = base_thresholds
    return rule_figures(base_out["probabilities"], base_out.get("ood_score"), labels, review0, ood0, decision0)


@dataclass(frozen=True)
class _FinalModel:
    rebuilt: Rebuilt  # fine-tuned on every cell
    proto: onnx.ModelProto
    parity: dict
    pseudo_labelled: int


def _final_model(base: onnx.ModelProto, images: np.ndarray, labels: np.ndarray, n_classes: int, plan: _Plan,
                 chosen: _Settings, ticks: _Ticks, cancel: threading.Event | None, min_steps: int) -> _FinalModel:
    """A fresh copy fine-tuned on every cell for the chosen epochs, its Unfamiliar statistics refitted, written
    back into the base graph and proved against Keras."""
    pseudo: list[int] = []
    final_pseudo = plan.extra if chosen.epochs > plan.stage1 else 0  # the rule chose the pseudo-label round
    rebuilt = _fine_tune(base, images, labels, plan.stage1 if final_pseudo else chosen.epochs, seed=plan.k,
                         on_checkpoint=None, cancel=cancel, tick=ticks.tick, min_steps=min_steps,
                         unlabelled=plan.unlabelled if final_pseudo else None, pseudo_epochs=final_pseudo, pseudo=pseudo)
    _, feats = _outputs(rebuilt.model, images)
    stats = fit_unfamiliar(feats, labels, n_classes)
    proto = write_back(rebuilt, chosen.temperature, stats)
    height, width = images.shape[1:3]
    serve = export.serving_function(rebuilt.model, chosen.temperature, stats, height, width)
    parity = export.prove_parity(serve, proto, images[:256])
    return _FinalModel(rebuilt, proto, parity, sum(pseudo))


def _soup(rebuilt: Rebuilt, held: _HeldOut, plan: _Plan, chosen: _Settings, images: np.ndarray, labels: np.ndarray,
          n_classes: int) -> onnx.ModelProto:
    """Experiment: the final and fold models' weights at the chosen epoch averaged (overwrites `rebuilt`'s)."""
    members = [rebuilt.model.get_weights()] + [held.fold_weights[(f, chosen.epochs)] for f in range(plan.k)]
    rebuilt.model.set_weights([np.mean(ws, axis=0) for ws in zip(*members)])
    soup_stats = fit_unfamiliar(_outputs(rebuilt.model, images)[1], labels, n_classes)
    return write_back(rebuilt, chosen.temperature, soup_stats)


def _notes(grouped: bool, before: RuleFigures, after: RuleFigures, rare: tuple, class_keys: list[str]) -> list[str]:
    """What the technician should know before trusting the figures."""
    notes = []
    if not grouped:
        notes.append("No specimens were known (or fewer than 3): folds are by image, and cells of one specimen may be "
                     "on both sides. The figures are optimistic.")
    if after.accuracy < before.accuracy or after.balanced_accuracy < before.balanced_accuracy:
        notes.append(f"Worse than the base model on this lab's cells (accuracy {before.accuracy:.1%} → "
                     f"{after.accuracy:.1%}, balanced {before.balanced_accuracy:.1%} → {after.balanced_accuracy:.1%}).")
    if rare:
        notes.append(f"Fewer than 10 verified cells of {', '.join(class_keys[i] for i in rare)}: the site model's "
                     "calls of these go to Review. Verify more of them before trusting its calls.")
    return notes


def site_metadata(base: Model, result: DeepAdaptation, site: str, number: int, approved_by: str, source: dict,
                  override: str | None = None) -> dict[str, str]:
    """The site model's metadata, written by the contract's one site writer (the quick method uses it too).
    `source` may carry the signers (`who_signed`); a candidate has no approver until it is installed."""
    provenance = SiteProvenance(
        name=site, number=number, method=DEEP, cells_per_class=result.cells_per_class, source=source,
        cross_validation=result.folds, before=result.before.as_dict(), after=result.after.as_dict(),
        notes=tuple(result.notes), approved_by=approved_by, override=override or "",
        fitting={"specimens": result.specimens, "grouped_by_specimen": result.grouped_by_specimen,
                 "epochs": result.epochs, "epoch_rule": result.epoch_rule,
                 "unlabelled": {"offered": result.unlabelled, "pseudo_labelled": result.pseudo_labelled},
                 "augmentation": AUGMENTATION, "learning_rate": LEARNING_RATE})
    fit = SiteFit(result.temperature, result.review_threshold, result.ood_threshold, tuple(result.review_classes),
                  made_by="slidetally-train adapt", when=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                  software={"slidetally": __version__, "tensorflow": tf.__version__}, parity=result.parity)
    base_metadata = ModelMetadata.from_props(dict(base.session.get_modelmeta().custom_metadata_map))
    return site_model_metadata(base_metadata, base.info.key, base.info.sha256, provenance, fit).to_props()


def with_metadata(proto: onnx.ModelProto, metadata: dict[str, str]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    write_props(out, metadata)
    out.producer_name = "slidetally-train adapt"
    onnx.checker.check_model(out)
    return out


__all__ = ["Cancelled", "DeepAdaptation", "deep_adapt", "grouped_folds", "keras_logits", "longest_within_one_se",
           "site_metadata", "with_metadata"]
