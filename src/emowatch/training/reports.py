"""Metrics and report files from predicted probabilities: classification report, confusion
matrix, learning curves."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    accuracy_score,
    classification_report,
    f1_score,
    precision_score,
    recall_score,
)


def split_metrics(
    probs: np.ndarray, y: np.ndarray, classes: Sequence[str], angry: str = "angry"
) -> dict:
    """Accuracy, macro-F1, per-class recall and, by name, recall and precision on angry (argmax)."""
    pred = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    recall = recall_score(y, pred, labels=labels, average=None, zero_division=0)
    out = {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        **{f"recall_{c}": float(r) for c, r in zip(classes, recall, strict=True)},
        "n": len(y),
    }
    if angry in classes:
        a = list(classes).index(angry)
        out["recall_angry"] = float(recall[a])
        out["precision_angry"] = float(precision_score(y == a, pred == a, zero_division=0))
    return out


def report_dict(probs: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> dict:
    """sklearn's classification report (per-class precision/recall/F1/support) as a dict."""
    return classification_report(
        y,
        probs.argmax(axis=1),
        labels=list(range(len(classes))),
        target_names=list(classes),
        output_dict=True,
        zero_division=0,
    )


def report_text(probs: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> str:
    return classification_report(
        y,
        probs.argmax(axis=1),
        labels=list(range(len(classes))),
        target_names=list(classes),
        digits=3,
        zero_division=0,
    )


def confusion_png(
    probs: np.ndarray, y: np.ndarray, classes: Sequence[str], path: Path, title: str
) -> Path:
    """Row-normalised confusion matrix with counts, as a PNG."""
    fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 2, 1.0 * len(classes) + 1.5))
    ConfusionMatrixDisplay.from_predictions(
        y,
        probs.argmax(axis=1),
        labels=list(range(len(classes))),
        display_labels=list(classes),
        normalize="true",
        values_format=".2f",
        cmap="Blues",
        ax=ax,
        colorbar=False,
    )
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_curves(
    rows: list[dict[str, float]], csv_path: Path, png_path: Path, title: str
) -> tuple[Path, Path]:
    """Per-epoch metrics as CSV (for `dvc plots`) and a loss/accuracy/angry-recall PNG."""
    keys = sorted({k for r in rows for k in r} - {"epoch"})
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", *keys])
        writer.writeheader()
        for r in rows:
            writer.writerow({"epoch": int(r["epoch"]), **{k: r.get(k, "") for k in keys}})
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    epochs = [int(r["epoch"]) for r in rows]
    panels = [
        ("loss", ["train/loss", "val/loss"]),
        ("accuracy", ["train/acc", "val/acc"]),
        ("angry", ["val/recall_angry", "val/precision_angry_at_recall"]),
    ]
    for ax, (name, series) in zip(axes, panels, strict=True):
        for key in series:
            values = [r.get(key, np.nan) for r in rows]
            if not all(np.isnan(values)):
                ax.plot(epochs, values, marker="o", label=key)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return csv_path, png_path
