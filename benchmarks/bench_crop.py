"""Benchmark: face-cropping throughput on the photos behind data.dvc (213 JAFFE images).

Times loading, Haar detection and crop+resize separately, best of --repeat passes, at the
configured detection resolution (detector.max_side) and at full resolution.
Rerun: .venv/bin/python benchmarks/bench_crop.py [--photos data/photos] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from emowatch import config
from emowatch.data import photos
from emowatch.data.images import load_gray
from emowatch.inference import faces

ROW = "| {:<16} | {:>8} | {:>9} | {:>8} | {:>8} |"


def run(
    files: list[photos.PhotoFile], detector: faces.Detector, margin: float, size: int
) -> dict[str, float]:
    t = {"load": 0.0, "detect": 0.0, "crop": 0.0}
    for photo in files:
        t0 = time.perf_counter()
        gray = load_gray(photo.path).gray
        t1 = time.perf_counter()
        face = faces.largest(detector(gray)) if gray is not None else None
        t2 = time.perf_counter()
        if face is not None:
            faces.crop(gray, faces.expand_box(face.box, margin, gray.shape), size)
        t["load"] += t1 - t0
        t["detect"] += t2 - t1
        t["crop"] += time.perf_counter() - t2
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("data/photos"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.photos.is_dir():
        raise SystemExit(f"{args.photos} not found: run `dvc pull data.dvc` first")
    cfg = config.compose()
    files = [p for p in photos.list_photos(args.photos) if p.cls]
    print(f"crop benchmark: {len(files)} photos in {args.photos}, best of {args.repeat}")
    print(ROW.format("detection at", "load ms", "detect ms", "crop ms", "images/s"))
    print(f"|{'-' * 18}|{'-' * 10}|{'-' * 11}|{'-' * 10}|{'-' * 10}|")
    for label, max_side in (
        (f"max_side {cfg.detector.max_side}", cfg.detector.max_side),
        ("full size", None),
    ):
        params = {k: v for k, v in cfg.detector.items() if k != "name"} | {"max_side": max_side}
        detector = faces.HaarDetector(**params)
        best = min(
            (
                run(files, detector, cfg.data.photos.crop.margin, cfg.data.photos.crop.size)
                for _ in range(args.repeat)
            ),
            key=lambda t: sum(t.values()),
        )
        per = {k: 1000 * v / len(files) for k, v in best.items()}
        rate = len(files) / sum(best.values())
        cells = (f"{per['load']:.2f}", f"{per['detect']:.2f}", f"{per['crop']:.2f}", f"{rate:.1f}")
        print(ROW.format(label, *cells))
    print("rerun: .venv/bin/python benchmarks/bench_crop.py")


if __name__ == "__main__":
    main()
