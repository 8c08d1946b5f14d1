"""Benchmark: how many FER2013 val/test images have a near copy in Training, by perceptual-hash
distance, and a sheet of sample pairs per distance band to judge where copies end and different
people begin (the evidence behind `data.fer2013.clean.near_max_distance`).

Rerun: .venv/bin/python benchmarks/bench_near_duplicates.py [--csv PATH] [--out PNG]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from emowatch.data import quality
from emowatch.data.fer2013 import SPLITS, read_csv
from emowatch.figures import image_grid

DEFAULT_CSV = Path("data/fer2013/fer2013.csv.gz")
BANDS = ((0, 0), (1, 2), (3, 4), (5, 6), (7, 8), (9, 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/near_pairs.png"))
    parser.add_argument("--per-band", type=int, default=8)
    args = parser.parse_args()
    if not args.csv.is_file():
        raise SystemExit(f"{args.csv} not found: run `dvc pull data.dvc` first")

    table = read_csv(args.csv)
    t0 = time.perf_counter()
    hashes = quality.phash(table.images)
    t_hash = time.perf_counter() - t0
    train = np.flatnonzero(table.split == SPLITS.index("train"))
    rows, sheet = [], []
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    nearest = {}
    for name in ("val", "test"):
        idx = np.flatnonzero(table.split == SPLITS.index(name))
        dist, j = quality.nearest(hashes[idx], hashes[train])
        nearest[name] = (idx, dist, train[j])
    t_near = time.perf_counter() - t0
    for k in range(0, 13, 2):
        rows.append((k, *(int((nearest[s][1] <= k).sum()) for s in ("val", "test"))))
    idx, dist, match = nearest["test"]
    for lo, hi in BANDS:
        hits = np.flatnonzero((dist >= lo) & (dist <= hi))
        pick = rng.choice(hits, min(args.per_band, len(hits)), replace=False) if len(hits) else []
        tiles = [(np.hstack([table.images[idx[i]], table.images[match[i]]]), f"{dist[i]} bits")
                 for i in pick]  # fmt: skip
        sheet.append((f"test | train pairs at {lo}-{hi} bits ({len(hits)})", tiles))
    image_grid(sheet, args.out, "nearest Training image of PrivateTest images, by distance")

    print(f"FER2013 near duplicates: {table.n_read} rows; 64-bit DCT hash")
    print(f"hash {t_hash:.2f} s, nearest-neighbour search {t_near:.2f} s")
    print("| max bits | val images with a train copy | test images with a train copy |")
    print("|---:|---:|---:|")
    for k, n_val, n_test in rows:
        print(f"| {k} | {n_val} | {n_test} |")
    print(f"sample pairs per distance band: {args.out}")
    print("rerun: .venv/bin/python benchmarks/bench_near_duplicates.py")


if __name__ == "__main__":
    main()
