"""Data-quality checks on an image set: byte-identical and near (perceptual-hash) duplicates,
leaks across every pair of splits, label conflicts among duplicates, and blank images."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
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


def phash(images: np.ndarray, hash_size: int = 8, dct_size: int = 32) -> np.ndarray:
    """64-bit perceptual hashes (uint64) of grayscale images (N, H, W): the low-frequency
    corner of the image's DCT at `dct_size` px, one bit per coefficient above their median
    (the DC term left out of the median). Near-identical images (re-encoded, slightly
    brightened, a watermark moved) differ in a few bits; different faces in about half."""
    out = np.empty(len(images), dtype=np.uint64)
    for i, img in enumerate(images):
        small = cv2.resize(
            img.astype(np.float32), (dct_size, dct_size), interpolation=cv2.INTER_AREA
        )
        low = cv2.dct(small)[:hash_size, :hash_size].ravel()
        bits = low > np.median(low[1:])
        out[i] = np.packbits(bits).view(">u8")[0]
    return out


def nearest(a: np.ndarray, b: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """For each hash of `a`, the Hamming distance to its nearest hash in `b` and that index."""
    dist = np.full(len(a), 65, dtype=np.int64)
    idx = np.full(len(a), -1, dtype=np.int64)
    if len(b) == 0:
        return dist, idx
    for start in range(0, len(a), chunk):
        d = np.bitwise_count(a[start : start + chunk, None] ^ b[None, :])
        idx[start : start + chunk] = d.argmin(axis=1)
        dist[start : start + chunk] = d.min(axis=1)
    return dist, idx


@dataclass
class PairFindings:
    """Images of split `first` with a copy in split `second`: byte-identical or near."""

    first: str
    second: str
    exact: np.ndarray  # (N,) per image of the whole table: a byte-identical copy in `second`
    near: np.ndarray  # (N,) per image: a copy within max_distance bits in `second` (⊇ exact)
    examples: list[dict]


def split_pairs(
    findings: Findings,
    hashes: np.ndarray,
    split: np.ndarray,
    source: list[str],
    split_names: tuple[str, ...],
    max_distance: int,
    n_examples: int = 20,
) -> list[PairFindings]:
    """Exact and near duplicates for every ordered pair of splits (train-val, train-test,
    val-test): the images of the first split that have a copy in the second."""
    out = []
    for i, first in enumerate(split_names):
        for second in split_names[i + 1 :]:
            a = np.flatnonzero(split == split_names.index(first))
            b = np.flatnonzero(split == split_names.index(second))
            exact = np.zeros(len(split), bool)
            exact[a] = np.isin(findings.group[a], findings.group[b])
            dist, j = nearest(hashes[a], hashes[b])
            near = np.zeros(len(split), bool)
            near[a] = (dist <= max_distance) | exact[a]
            hits = np.flatnonzero(dist <= max_distance)[:n_examples]
            examples = [
                {"where": source[a[k]], "copy": source[b[j[k]]], "bits": int(dist[k])} for k in hits
            ]
            out.append(PairFindings(first, second, exact, near, examples))
    return out
