"""PNG figures for people to look at: labelled grids of grayscale images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

Tile = tuple[np.ndarray, str]  # image, caption


def image_grid(
    rows: Sequence[tuple[str, Sequence[Tile]]], path: Path, title: str, tile: float = 1.6
) -> Path:
    """Save a grid with one labelled row per entry, each tile captioned; empty rows say so."""
    n_cols = max([len(tiles) for _, tiles in rows] + [1])
    n_rows = max(len(rows), 1)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(tile * n_cols + 1.2, tile * n_rows + 0.6), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for r, (label, tiles) in enumerate(rows):
        axes[r, 0].set_title(label, loc="left", fontsize=9, fontweight="bold")
        if not tiles:
            axes[r, 0].text(0, 0.5, "(none)", fontsize=9)
        for c, (img, caption) in enumerate(tiles):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=0, vmax=255)
            ax.text(0.5, -0.02, caption, transform=ax.transAxes, ha="center", va="top", fontsize=6)
    if not rows:
        axes[0, 0].text(0, 0.5, "(nothing to show)", fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def note_png(path: Path, title: str, text: str) -> Path:
    """A figure that only says something: where a figure has nothing to show, and why."""
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10)
    fig.suptitle(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
