"""Test-split metrics and the figures of the model card (matplotlib, written as PNG)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn import metrics


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, classes: list[str]) -> dict:
    report = metrics.classification_report(
        labels, predictions, labels=list(range(len(classes))), target_names=classes, output_dict=True, zero_division=0
    )
    return {
        "n": int(len(labels)),
        "accuracy": float(metrics.accuracy_score(labels, predictions)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(labels, predictions)),
        "macro_f1": float(report["macro avg"]["f1-score"]),
        "per_class": {c: {k: float(report[c][k]) for k in ("precision", "recall", "f1-score", "support")} for c in classes},
        "confusion": metrics.confusion_matrix(labels, predictions, labels=list(range(len(classes)))).tolist(),
    }


def binary_metrics(labels: np.ndarray, p_positive: np.ndarray, threshold: float) -> dict:
    calls = (p_positive >= threshold).astype(int)
    return {
        "threshold": threshold,
        "f1_idc": float(metrics.f1_score(labels, calls, zero_division=0)),
        "roc_auc": float(metrics.roc_auc_score(labels, p_positive)) if len(set(labels)) > 1 else float("nan"),
        "pr_auc": float(metrics.average_precision_score(labels, p_positive)) if len(set(labels)) > 1 else float("nan"),
    }


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    matrix = np.array(confusion)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(classes), 0.8 + 0.6 * len(classes)), dpi=90)
    ax.imshow(matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if i == j else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def read_history(csv_path: Path) -> dict[str, list[float]]:
    history: dict[str, list[float]] = {}
    if not csv_path.exists():
        return history
    with csv_path.open() as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                # A model trained with an auxiliary head names its main accuracy "logits_accuracy".
                history.setdefault(key.replace("logits_accuracy", "accuracy"), []).append(float(value))
    return history


def plot_curves(histories: dict[str, dict[str, list[float]]], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=90)
    for name, history in histories.items():
        for split, style in (("", "-"), ("val_", "--")):
            if f"{split}loss" in history:
                axes[0].plot(history[f"{split}loss"], style, label=f"{name} {split or 'train_'}loss")
            if f"{split}accuracy" in history:
                axes[1].plot(history[f"{split}accuracy"], style, label=f"{name} {split or 'train_'}accuracy")
    for ax, title in zip(axes, ("loss per epoch", "accuracy per epoch")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_reliability(before: list[dict], after: list[dict], ece: tuple[float, float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=90)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    for table, label, marker in ((before, f"before (ECE {ece[0]:.3f})", "o"), (after, f"after T (ECE {ece[1]:.3f})", "s")):
        ax.plot([r["confidence"] for r in table], [r["accuracy"] for r in table], marker=marker, label=label)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability (test split)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_heatmaps(maps: list[tuple[str, np.ndarray, np.ndarray]], path: Path) -> None:
    """Predicted vs true IDC maps per complete patient (NaN where the slide has no patch)."""
    if not maps:
        return
    fig, axes = plt.subplots(len(maps), 2, figsize=(7, 3.2 * len(maps)), dpi=80, squeeze=False)
    cmap = matplotlib.colormaps["magma"].copy()
    cmap.set_bad("white")
    for row, (patient, predicted, truth) in enumerate(maps):
        for col, (image, title) in enumerate(((predicted, "predicted P(IDC)"), (truth, "true IDC"))):
            ax = axes[row][col]
            ax.imshow(np.ma.masked_invalid(image), cmap=cmap, vmin=0, vmax=1)
            ax.set_title(f"patient {patient}: {title}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
