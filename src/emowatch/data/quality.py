"""Data-quality checks on an image set: byte-identical duplicates, cross-split leaks, label
conflicts among duplicates, and blank images."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass
class Findings:
    """Per-image flags and the duplicate groups behind them."""

    group: np.ndarray  # (N,) duplicate-group index per image
    digest: list[str]  # hex digest per group
    duplicate: np.ndarray  # (N,) in a group of two or more
    cross_split: np.ndarray  # (N,) its group spans more than one split
    conflicting: np.ndarray  # (N,) its group carries more than one label
    blank: np.ndarray  # (N,) pixel standard deviation below the threshold
    std: np.ndarray  # (N,) pixel standard deviation


def _distinct_per_group(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    pairs = np.unique(np.stack([group, values.astype(np.int64)], axis=1), axis=0)
    return np.bincount(pairs[:, 0], minlength=n_groups)


def inspect(
    images: np.ndarray, labels: np.ndarray, split: np.ndarray, blank_max_std: float
) -> Findings:
    """Flag duplicates (exact bytes), cross-split leaks, conflicting labels and blank images."""
    flat = np.ascontiguousarray(images.reshape(len(images), -1))
    digests = [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in flat]
    uniq, group, counts = np.unique(
        np.asarray(digests, dtype=object).astype(str), return_inverse=True, return_counts=True
    )
    n_groups = len(uniq)
    n_splits = _distinct_per_group(group, split, n_groups)
    n_labels = _distinct_per_group(group, labels, n_groups)
    std = flat.std(axis=1) if len(flat) else np.zeros(0)
    return Findings(
        group=group,
        digest=[str(d) for d in uniq],
        duplicate=counts[group] > 1,
        cross_split=n_splits[group] > 1,
        conflicting=n_labels[group] > 1,
        blank=std < blank_max_std,
        std=std,
    )


def duplicate_groups(
    findings: Findings,
    labels: np.ndarray,
    split: np.ndarray,
    source: list[str],
    split_names: tuple[str, ...],
) -> list[dict]:
    """One record per group of byte-identical images: where they are, their splits and labels."""
    idx = np.flatnonzero(findings.duplicate)
    order = idx[np.argsort(findings.group[idx], kind="stable")]
    records: list[dict] = []
    for g, members in _runs(findings.group[order], order):
        records.append(
            {
                "digest": findings.digest[g][:16],
                "size": len(members),
                "where": [source[i] for i in members],
                "splits": sorted({split_names[split[i]] for i in members}),
                "labels": sorted({int(labels[i]) for i in members}),
                "cross_split": bool(findings.cross_split[members[0]]),
                "conflicting": bool(findings.conflicting[members[0]]),
            }
        )
    return records


def _runs(keys: np.ndarray, items: np.ndarray) -> list[tuple[int, list[int]]]:
    """Consecutive runs of equal keys: [(key, [item, ...]), ...]."""
    if len(keys) == 0:
        return []
    cuts = np.flatnonzero(np.diff(keys)) + 1
    return [
        (int(k[0]), [int(i) for i in it])
        for k, it in zip(np.split(keys, cuts), np.split(items, cuts), strict=True)
    ]
