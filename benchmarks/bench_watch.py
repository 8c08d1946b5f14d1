"""Benchmark: `emowatch watch` frames/s on 640×480 videos with one and two faces.

The videos are made from the JAFFE photos behind data.dvc (faces drifting a few pixels per
frame) and written to a temporary folder. Each run decodes the video, detects (Haar, on the
frame downscaled to deploy.watch.detect_max_side), classifies every face, tracks and applies the
alert rule, exactly as `emowatch watch` does (events go to a null sink). Detection and
classification are timed separately; the end-to-end rate includes video decoding.
Rerun: .venv/bin/python benchmarks/bench_watch.py [--model URI-or-folder] [--frames 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from emowatch import config
from emowatch.deploy import watch
from emowatch.deploy.sources import open_source

ROW = "| {:<6} | {:>10} | {:>9} | {:>11} | {:>10} | {:>6} |"


class NullSink:
    def send(self, event: dict) -> None:
        pass

    def close(self) -> dict:
        return {}


def make_video(path: Path, faces: list[np.ndarray], frames: int) -> Path:
    """640×480 frames with the given faces (grayscale, 200 px) moving slowly."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (640, 480))
    for i in range(frames):
        canvas = np.full((480, 640), 100, np.uint8)
        for j, face in enumerate(faces):
            x = 60 + 320 * j + int(10 * np.sin(i / 10))
            canvas[140:340, x : x + 200] = face
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def run(cfg, classifier, video: Path) -> tuple[dict, float]:
    watcher = watch.Watcher(classifier, cfg.deploy.watch, NullSink(), None)
    start = time.perf_counter()
    for frame in open_source(str(video)):
        watcher.step(frame)
    wall = time.perf_counter() - start
    return watcher.close(None).as_event(), watcher.summary.frames / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: deploy.watch.model (champion)")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--photos", type=Path, default=Path("data/photos"))
    args = parser.parse_args()
    angry = sorted((args.photos / "angry").glob("*"))[:1]
    happy = sorted((args.photos / "happy").glob("*"))[:1]
    if not angry or not happy:
        raise SystemExit(f"{args.photos} not found: run `dvc pull data.dvc` first")
    faces = [
        cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), (200, 200)) for p in angry + happy
    ]
    cfg = config.compose()
    root = config.find_root()
    classifier = watch.load_classifier(cfg, args.model, root=root)
    print(
        f"watch benchmark: {args.frames} frames of 640x480 per video, model "
        f"{args.model or cfg.deploy.watch.model}, {cv2.getNumThreads()} OpenCV threads"
    )
    print(ROW.format("faces", "detect at", "detect ms", "classify ms", "end-to-end", "fps≥25"))
    print(f"|{'-' * 8}|{'-' * 12}|{'-' * 11}|{'-' * 13}|{'-' * 12}|{'-' * 8}|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 2):
            video = make_video(Path(tmp) / f"{n}.mp4", faces[:n], args.frames)
            for side in (cfg.deploy.watch.detect_max_side, None):
                classifier.detector.max_side = side
                stats, fps = run(cfg, classifier, video)
                cells = (
                    str(n),
                    f"{side} px" if side else "640 px",
                    f"{stats['detect_ms_per_frame']:.1f}",
                    f"{stats['classify_ms_per_frame']:.1f}",
                    f"{fps:.1f} fps",
                    "yes" if fps >= 25 else "no",
                )
                print(ROW.format(*cells))
    print("rerun: .venv/bin/python benchmarks/bench_watch.py")


if __name__ == "__main__":
    main()
