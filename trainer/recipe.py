"""The recipe: every choice that shapes a model's weights, resolved once and frozen.

A run folder remembers the recipe it was started with (`recipe.json`); resuming it with a
different recipe is refused, so a model is never half one recipe and half another.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from desktop.core.inference.contract import BLOOD, IDC
from desktop.core.inference.imaging import InputSpec
from trainer.augment import AugmentConfig


class RecipeChanged(Exception):
    """A run folder is being resumed with a recipe other than the one it was started with."""


KINDS = {BLOOD: "blood", IDC: "idc"}  # the model contract's task -> the trainer's data layout


@dataclass(frozen=True)
class Recipe:
    key: str  # file stem of the shipped model
    task: str  # the model contract's task name
    display_name: str
    input_size: int
    small_input: str
    widths: tuple[int, ...]
    epochs: int
    seed_epochs: int
    batch: int
    learning_rate: float
    balanced: bool  # class weights against imbalance
    review_accuracy: float  # accepted calls must reach this on val ...
    review_budget: float  # ... sending at most this share to Review
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    stem_stride: int = 2
    ema: float = 0.0  # >0: ship an exponential moving average of the weights
    subtype_weight: float = 0.0  # >0: auxiliary head on the file names' sub-types (SNE, BNE, MY, ...), this loss weight
    # normalise each image's bright background to the training images' (in the graph):
    # "off", "trained" (on while training) or "serving" (off while training, on from calibration to export)
    white_balance: str = "off"
    slide_step_weight: float = 0.0  # >0: IDC calls blend each patch's P(IDC) with its neighbours' (core/inference/slide_step)
    version: str = "1.0.0"
    limit: int | None = None  # images per class (blood) or patients (idc), for quick runs
    skip_seed: bool = False  # do not train the reference model

    @property
    def kind(self) -> str:
        """"blood" or "idc": which data layout and split rule, read from the task."""
        return KINDS[self.task]

    @property
    def spec(self) -> InputSpec:
        """The app's preprocessing for this model: the one the trainer decodes with."""
        return InputSpec(self.input_size, self.input_size, "area", self.small_input)

    def as_dict(self) -> dict:
        """The recipe as recorded in a run folder and the model's provenance (with its kind, as before)."""
        return json.loads(json.dumps({"kind": self.kind, **dataclasses.asdict(self)}))


DEFAULTS = {
    "blood": Recipe("blood-pbc8", BLOOD, "Blood smear differential (PBC, 8 classes)",
                    96, "resize", (48, 96, 192, 320), seed_epochs=40, batch=64,
                    learning_rate=3e-3, balanced=False, review_accuracy=0.995, review_budget=0.08,
                    augment=AugmentConfig(scale_min=0.5, blur_prob=0.2), epochs=30,
                    white_balance="serving", version="3.0.0"),  # v3: v2's recipe, white balance for serving
    "idc": Recipe("breast-idc", IDC, "Breast histopathology IDC (50x50 patches)",
                  50, "pad-white", (32, 64, 128, 192), epochs=40, seed_epochs=30, batch=128,
                  learning_rate=3e-3, balanced=True, review_accuracy=0.95, review_budget=0.15,
                  augment=AugmentConfig(hed_sigma=0.08, scale_prob=0.3, scale_min=0.85, scale_max=1.15),
                  ema=0.998, slide_step_weight=0.5, version="3.0.0"),
}


def resolve(kind: str, *, epochs: int | None = None, seed_epochs: int | None = None, limit: int | None = None,
            skip_seed: bool = False, widths: tuple[int, ...] | None = None, scale_min: float | None = None,
            stem_stride: int | None = None, ema: float | None = None, hed_sigma: float | None = None) -> Recipe:
    """The task's default recipe with the command line's overrides (None = keep the default)."""
    recipe = DEFAULTS[kind]
    augment = recipe.augment
    if scale_min is not None:
        augment = dataclasses.replace(augment, scale_min=scale_min)
    if hed_sigma is not None:
        augment = dataclasses.replace(augment, hed_sigma=hed_sigma)
    overrides = {"epochs": epochs, "seed_epochs": seed_epochs, "limit": limit, "widths": widths,
                 "stem_stride": stem_stride, "ema": ema}
    return dataclasses.replace(recipe, augment=augment, skip_seed=skip_seed,
                               **{k: v for k, v in overrides.items() if v is not None})


def pin(recipe: Recipe, out: Path) -> None:
    """Record the recipe in a new run folder, or refuse to resume one started with another."""
    path = out / "recipe.json"
    current = recipe.as_dict()
    if path.exists():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in current.keys() | before.keys() if current.get(k) != before.get(k))
        if changed:
            detail = "; ".join(f"{k}: {before.get(k)!r} -> {current.get(k)!r}" for k in changed)
            raise RecipeChanged(f"{out} was started with another recipe ({detail}); "
                                "train into a new --out folder, or repeat the original flags to resume")
        return
    path.write_text(json.dumps(current, indent=1) + "\n", encoding="utf-8")
