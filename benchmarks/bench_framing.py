"""Benchmark: where the eyes sit in the faces a model trains on and in the crops it is given.

`deploy.align`'s framing (eyes 0.375 of the side apart, their midpoint at 0.49, 0.378) rests on
this measurement: YuNet's eye landmarks on FER2013's own training faces (upscaled ×4 so YuNet
finds them), against the photos' faces as crop_faces cuts them (the largest Haar face at full
resolution, squared and grown by data.photos.crop.margin), measured the same way.
Table: per source, faces measured of those tried, and the medians (with the 25th and 75th
percentiles) of the eye distance and of the eyes' midpoint, as shares of the crop's side.
Rerun: .venv/bin/python benchmarks/bench_framing.py [--faces 2000]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

import cv2
import numpy as np

from emowatch import config
from emowatch.config import resolve_path
from emowatch.data import photos
from emowatch.data.images import load_gray
from emowatch.evaluation.conditions import reference_box
from emowatch.inference import faces
from emowatch.layout import Layout

SIDE = 192  # every face is measured at this side


def eyes(crops: Iterable[np.ndarray]) -> tuple[np.ndarray, int]:
    """(rows of eye distance, midpoint x, midpoint y as shares of the side; faces tried)."""
    yunet = faces.YuNetDetector(conf=0.5, min_size=28, max_side=None)
    rows, tried = [], 0
    for c in crops:
        tried += 1
        face = faces.largest(yunet(cv2.resize(c, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)))
        if face is None or face.landmarks is None:
            continue
        (rx, ry), (lx, ly) = face.landmarks[0], face.landmarks[1]
        rows.append((np.hypot(lx - rx, ly - ry), (lx + rx) / 2, (ly + ry) / 2))
    return np.asarray(rows) / SIDE, tried


def photo_crops(cfg, root) -> Iterable[np.ndarray]:
    margin = float(cfg.data.photos.crop.margin)
    for f in photos.list_photos(resolve_path(cfg.data.photos.root, root)):
        gray = load_gray(resolve_path(cfg.data.photos.root, root) / f.rel).gray
        box = reference_box(gray) if gray is not None else None
        if box is not None:
            yield faces.crop(gray, faces.expand_box(box, margin, gray.shape), SIDE)


def cell(values: np.ndarray) -> str:
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return f"{med:.3f} ({q1:.3f}–{q3:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=2000, help="FER2013 training faces measured")
    args = parser.parse_args()
    root = config.find_root()
    cfg = config.compose()
    train = np.load(Layout(cfg, root).fer2013_split("train"))["x"]
    pick = np.random.default_rng(int(cfg.seed)).choice(len(train), args.faces, replace=False)
    margin = cfg.data.photos.crop.margin
    sources = {
        f"FER2013 training faces ({args.faces} drawn)": eyes(train[i] for i in pick),
        f"photos, Haar box grown by {margin}": eyes(photo_crops(cfg, root)),
    }
    print("framing benchmark: YuNet's eye landmarks, shares of the crop's side; median (IQR)")
    print("| faces | measured | eye distance | eyes' midpoint x | eyes' midpoint y |")
    print("|---|---|---|---|---|")
    for name, (rows, tried) in sources.items():
        if not len(rows):
            print(f"| {name} | 0 of {tried} | – | – | – |")
            continue
        print(
            f"| {name} | {len(rows)} of {tried} | {cell(rows[:, 0])} | {cell(rows[:, 1])} | "
            f"{cell(rows[:, 2])} |"
        )
    print("\ndeploy.align (conf/deploy/default.yaml) holds the FER2013 medians")
    print(f"rerun: .venv/bin/python benchmarks/bench_framing.py --faces {args.faces}")


if __name__ == "__main__":
    main()
