"""What one training run measured, in the order the run measures it: the typed result of
`trainer.train.run`, written as the run folder's `results.json` and read by the model card."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class RunResults:
    # 1. the split
    task: str  # "blood" | "idc" (the recipe's kind)
    classes: list[str]
    split_hash: str
    counts: dict  # split -> class -> images
    data: dict  # facts read from the data (for the card's citation paragraph)
    # 3. the reference ("seed") model's test metrics, when it was trained
    seed: dict | None = None
    # 5. what the val split decided and the figures runs are chosen by
    val_accuracy: float | None = None  # the shipped rule on clean val images
    val_balanced_accuracy: float | None = None
    val_complete_fraction_mae: float | None = None  # IDC: complete val slides' fraction error
    val_complete_patients: dict = field(default_factory=dict)
    temperature: float = 1.0
    review_threshold: float = 0.0
    decision_threshold: float = 0.5
    review_tradeoff_val: list = field(default_factory=list)
    # 6. the test split, read once
    ours: dict = field(default_factory=dict)
    # 7-8. Unfamiliar detector and robustness
    ood_threshold: float | None = None
    robustness: dict = field(default_factory=dict)
    # 9. export
    parity: dict = field(default_factory=dict)
    speed_images_per_s: float = 0.0
    training_minutes: float = 0.0

    def take_val_figures(self, figures: dict) -> None:
        """`train.val_figures`' keys, each into its field (an unknown key is a bug, not a silent extra)."""
        for key, value in figures.items():
            if not hasattr(self, key):
                raise KeyError(f"unknown val figure {key!r}")
            setattr(self, key, value)

    def as_dict(self) -> dict:
        return asdict(self)
