"""Read FER2013 from the Kaggle CSV (plain or gzipped) or from an image-folder layout.

Both readers return a `Fer2013Table`: the valid images with labels and splits, and every
rejected row or file with the reason. Nothing is dropped silently.
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emowatch.errors import DataError

SPLITS = ("train", "val", "test")
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


@dataclass
class Fer2013Table:
    """Valid images and what was rejected on the way."""

    images: np.ndarray  # (N, S, S) uint8
    labels: np.ndarray  # (N,) int64 class index
    split: np.ndarray  # (N,) int8 index into SPLITS
    source: list[str]  # (N,) where each image came from: "row 17" or a file path
    row: np.ndarray  # (N,) int64 data-row index in the CSV (position in `source` for folders)
    n_read: int  # rows or files examined
    rejected: list[dict] = field(default_factory=list)  # {"where", "reason"} (+ "row", "line")

    def subset(self, mask: np.ndarray) -> Fer2013Table:
        """The rows where `mask` is true (rejections are kept as they are)."""
        idx = np.flatnonzero(mask)
        return Fer2013Table(
            images=self.images[idx],
            labels=self.labels[idx],
            split=self.split[idx],
            source=[self.source[i] for i in idx],
            row=self.row[idx],
            n_read=self.n_read,
            rejected=self.rejected,
        )


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"FER2013 CSV not found: {path} (run `dvc pull data.dvc`?)")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(
                f"{path}: corrupt gzip file ({err}): fetch it again (`dvc pull data.dvc`)"
            ) from None
    return data


def _reject(rejected: list[dict], row: int, reason: str) -> None:
    # row: 0-based data row (aligns with FER+), line: 1-based line in the file (header is 1).
    rejected.append({"where": f"line {row + 2}", "row": row, "line": row + 2, "reason": reason})


def read_csv(path: Path, n_classes: int = 7, image_size: int = 48) -> Fer2013Table:
    """Parse the Kaggle FER2013 CSV (`emotion,pixels,Usage`) with vectorised pixel parsing.

    Malformed rows (wrong field count, label outside 0..n_classes-1, unknown Usage, wrong pixel
    count, non-integer or out-of-range pixel) are rejected with their row number and reason.
    """
    lines = _read_bytes(path).splitlines()
    if not lines:
        raise DataError(f"{path}: empty file")
    header = [
        h.strip().strip(b'"').decode("utf-8", "replace").lower() for h in lines[0].split(b",")
    ]
    try:
        i_label, i_pix, i_usage = (header.index(c) for c in ("emotion", "pixels", "usage"))
    except ValueError as err:
        raise DataError(
            f"{path}: header {header} lacks one of emotion, pixels, Usage (Kaggle FER2013 format)"
        ) from err
    n_fields, n_pix = len(header), image_size * image_size
    usage_codes = {u.encode(): SPLITS.index(s) for u, s in USAGE_TO_SPLIT.items()}

    rejected: list[dict] = []
    good_pix: list[bytes] = []
    good_rows: list[int] = []
    labels: list[int] = []
    splits: list[int] = []
    body = lines[1:]
    while body and not body[-1].strip():  # trailing newlines are not rows
        body.pop()
    for row, line in enumerate(body):
        fields = line.split(b",")
        if len(fields) != n_fields:
            _reject(rejected, row, f"{len(fields)} fields, expected {n_fields}")
            continue
        label = fields[i_label].strip().strip(b'"')
        if not label.isdigit() or int(label) >= n_classes:
            _reject(
                rejected, row, f"label {label.decode(errors='replace')!r} outside 0-{n_classes - 1}"
            )
            continue
        usage = fields[i_usage].strip().strip(b'"')
        if usage not in usage_codes:
            _reject(rejected, row, f"unknown Usage {usage.decode(errors='replace')!r}")
            continue
        pix = fields[i_pix].strip().strip(b'"')
        if not pix.replace(b" ", b"").isdigit():
            _reject(rejected, row, "non-integer pixel value")
            continue
        if pix.count(b" ") != n_pix - 1 or b"  " in pix:
            _reject(rejected, row, f"{len(pix.split())} pixel values, expected {n_pix}")
            continue
        good_pix.append(pix)
        good_rows.append(row)
        labels.append(int(label))
        splits.append(usage_codes[usage])

    values = _parse_pixels(good_pix, n_pix)
    in_range = values.max(axis=1, initial=0) <= 255
    for i in np.flatnonzero(~in_range):
        _reject(rejected, good_rows[i], "pixel value above 255")
    rejected.sort(key=lambda r: r["row"])
    rows = np.asarray(good_rows, dtype=np.int64)[in_range]
    return Fer2013Table(
        images=values[in_range].astype(np.uint8).reshape(-1, image_size, image_size),
        labels=np.asarray(labels, dtype=np.int64)[in_range],
        split=np.asarray(splits, dtype=np.int8)[in_range],
        source=[f"row {r}" for r in rows],
        row=rows,
        n_read=len(body),
        rejected=rejected,
    )


def _parse_pixels(rows: list[bytes], n_pix: int) -> np.ndarray:
    """Space-separated digit strings (already checked for shape) to an (N, n_pix) int16 array."""
    if not rows:
        return np.zeros((0, n_pix), dtype=np.int16)
    try:
        return np.loadtxt(io.BytesIO(b"\n".join(rows)), dtype=np.int16, delimiter=" ", ndmin=2)
    except (ValueError, OverflowError):
        # A number too long for int16 slipped through: parse row by row, saturating.
        return np.stack([np.minimum([int(v) for v in r.split()], 256) for r in rows])


def read_folders(
    root: Path,
    classes: list[str],
    train: str = "train",
    test: str = "test",
    val_fraction: float = 0.1,
    image_size: int = 48,
    seed: int = 42,
) -> Fer2013Table:
    """Read the image-folder layout `train/<class>/*` + `test/<class>/*`.

    A stratified `val_fraction` of train becomes val. Unreadable files, non-images and files
    outside a known class folder are rejected with their path; other sizes are resized.
    """
    from PIL import Image, UnidentifiedImageError
    from sklearn.model_selection import train_test_split

    images, labels, splits, sources, rejected = [], [], [], [], []
    n_read = 0
    for split_name, folder in (("train", train), ("test", test)):
        base = root / folder
        if not base.is_dir():
            raise DataError(f"FER2013 image folder {base} not found (layout: {train}/<class>/*)")
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            n_read += 1
            rel = str(path.relative_to(root))
            cls = path.parent.name if path.parent != base else None
            if cls not in classes:
                reason = f"unknown class folder {cls!r}" if cls else "not inside a class folder"
                rejected.append({"where": rel, "reason": reason})
                continue
            try:
                with Image.open(path) as img:
                    img = img.convert("L")
                    if img.size != (image_size, image_size):
                        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
                    images.append(np.asarray(img, dtype=np.uint8))
            except (UnidentifiedImageError, OSError, ValueError) as err:
                kind = "not an image" if isinstance(err, UnidentifiedImageError) else "unreadable"
                rejected.append({"where": rel, "reason": f"{kind}: {err}"})
                continue
            labels.append(classes.index(cls))
            splits.append(SPLITS.index(split_name))
            sources.append(rel)

    split = np.asarray(splits, dtype=np.int8)
    label_arr = np.asarray(labels, dtype=np.int64)
    train_idx = np.flatnonzero(split == SPLITS.index("train"))
    if len(train_idx) >= 2 and val_fraction > 0:
        counts = np.bincount(label_arr[train_idx])
        n_classes, n_val = int((counts > 0).sum()), int(np.ceil(val_fraction * len(train_idx)))
        # Stratify where every class can be in both parts; tiny sets fall back to random.
        can_stratify = counts[counts > 0].min() >= 2 and n_classes <= min(
            n_val, len(train_idx) - n_val
        )
        stratify = label_arr[train_idx] if can_stratify else None
        _, val_idx = train_test_split(
            train_idx, test_size=val_fraction, random_state=seed, stratify=stratify
        )
        split[val_idx] = SPLITS.index("val")
    return Fer2013Table(
        images=np.stack(images) if images else np.zeros((0, image_size, image_size), np.uint8),
        labels=label_arr,
        split=split,
        source=sources,
        row=np.arange(len(sources), dtype=np.int64),
        n_read=n_read,
        rejected=rejected,
    )
