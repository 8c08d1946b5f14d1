"""Benchmark: `emowatch watch` on camera scenes, how small a face it finds and how fast it runs.

Scenes are made from the JAFFE photos behind data.dvc (emowatch.evaluation.scenes: each photo
scaled so its face box has the given side in the camera's pixels, drifting a few pixels per
frame), written as mp4 videos and watched exactly as `emowatch watch` does (decode, find
faces, classify, track, alert rule; events to a null sink).

Table 1, finding faces: one face of 48 / 80 / 120 / 200 px at 640x480 and 1920x1080; the share of
frames whose true face was found (IoU >= 0.3) and frames/s, for the old way (the whole frame
downscaled to 320 px, every frame) and for the finder (deploy.watch.detect: a sweep fine enough
for min_face every full_every frames, regions around tracked faces in between).
Table 2, camera speed with the model: 1, 2 and 4 faces at 640x480, 2 faces at 1920x1080.
Table 3, several cameras in one process (one model, one batch per round): aggregate frames/s.
Rerun: .venv/bin/python benchmarks/bench_watch.py [--model URI-or-folder] [--frames 150]
[--detector yunet]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import torch

from emowatch import config
from emowatch.deploy import alerts, cameras, site_model, watch
from emowatch.deploy.sources import open_source
from emowatch.deploy.watcher import Watcher
from emowatch.evaluation import scenes
from emowatch.inference.faces import iou

SIZES = (48, 80, 120, 200)
CAMERAS = {"640x480": (640, 480), "1920x1080": (1920, 1080)}


class NullSink:
    def send(self, event: dict) -> None:
        pass

    def close(self) -> dict:
        return {}


def write(path: Path, scene) -> tuple[Path, list[list]]:
    truth, writer = [], None
    for frame, boxes in scene:
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
        writer.write(frame)
        truth.append(boxes)
    writer.release()
    return path, truth


def run(cfg, classifier, video: Path, truth: list[list], finder: bool) -> dict:
    """Watch the video; the share of true faces found per frame, fps, ms per stage."""
    watcher = Watcher(classifier, cfg.deploy.watch, NullSink(), None)
    if not finder:
        watcher.finder = None  # the old way: classifier.detect on the frame at 320 px
    found = 0
    start = time.perf_counter()
    for frame, boxes in zip(open_source(str(video)), truth, strict=True):
        watcher.step(frame)
        seen = [p.box for p in watcher.last[1]]
        found += sum(any(iou(b, s) >= 0.3 for s in seen) for b in boxes)
    wall = time.perf_counter() - start
    stats = watcher.close(None).as_event()
    total = sum(len(b) for b in truth)
    return stats | {"rate": found / total, "fps_e2e": len(truth) / wall}


def table_sizes(cfg, classifier, people, frames: int, tmp: Path) -> None:
    print("\nTable 1: finding one face, by face size (face box side in the camera's pixels)")
    head = "| camera | face | old: found | old: fps | finder: found | finder: fps | >= 95% |"
    print(head + "\n|---|---|---|---|---|---|---|")
    for name, size in CAMERAS.items():
        for side in SIZES:
            video, truth = write(
                tmp / f"{name}-{side}.mp4", scenes.frames(people[:1], side, size, frames)
            )
            old = run(cfg, classifier, video, truth, finder=False)
            new = run(cfg, classifier, video, truth, finder=True)
            ok = "yes" if new["rate"] >= 0.95 else "no"
            print(
                f"| {name} | {side} px | {old['rate']:.0%} | {old['fps_e2e']:.1f} | "
                f"{new['rate']:.0%} | {new['fps_e2e']:.1f} | {ok} |"
            )


def table_speed(cfg, classifier, people, frames: int, tmp: Path) -> None:
    print("\nTable 2: camera speed with the model, end to end (decode to alert rule)")
    head = "| camera | faces | found | detect ms | classify ms | fps | floor | met |"
    print(head + "\n|---|---|---|---|---|---|---|---|")
    for name, n, side, floor in (
        ("640x480", 1, 100, 25),
        ("640x480", 2, 100, 25),
        ("640x480", 4, 80, 15),
        ("1920x1080", 2, 160, 15),
    ):
        video, truth = write(
            tmp / f"speed-{name}-{n}.mp4",
            scenes.frames(people[:n], side, CAMERAS[name], frames),
        )
        r = run(cfg, classifier, video, truth, finder=True)
        met = "yes" if r["fps_e2e"] >= floor else "no"
        print(
            f"| {name} | {n} x {side} px | {r['rate']:.0%} | {r['detect_ms_per_frame']:.1f} | "
            f"{r['classify_ms_per_frame']:.1f} | {r['fps_e2e']:.1f} | >= {floor} | {met} |"
        )


def table_cameras(cfg, classifier, spec: str, people, frames: int, tmp: Path) -> None:
    print("\nTable 3: several cameras in one process (640x480, 2 faces each, one batch per round)")
    print("| cameras | frames | aggregate fps | per camera fps |\n|---|---|---|---|")
    video, _ = write(tmp / "cam.mp4", scenes.frames(people[:2], 100, CAMERAS["640x480"], frames))
    for n in (1, 2, 4):
        sources = []
        for i in range(n):
            (tmp / f"cam{i}").mkdir(exist_ok=True)
            sources.append(str(shutil.copy(video, tmp / f"cam{i}" / f"c{i}.mp4")))
        # The watch loop itself (deploy/watch.py), events to a null sink.
        quiet = alerts.Fanout([NullSink()])
        session = watch.Session(cfg, classifier, quiet, alerts.Fanout([]), None, several=n > 1)
        session.model = spec
        feeds, _ = watch.open_feeds(cfg.deploy.watch, sources, cameras.camera_names(sources), False)
        session.add_feeds(feeds, {}, None)
        start = time.perf_counter()
        session.run()
        wall = time.perf_counter() - start
        total = sum(w.summary.frames for w in session.watchers.values())
        print(f"| {n} | {total} | {total / wall:.1f} | {total / wall / n:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: deploy.watch.model (auto)")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--photos", type=Path, default=Path("data/photos"))
    parser.add_argument("--detector", default=None, help="another detector (conf/detector)")
    args = parser.parse_args()
    files = [sorted((args.photos / c).glob("*"))[:1] for c in ("angry", "happy", "sad", "neutral")]
    if not all(files):
        raise SystemExit(f"{args.photos} not found: run `dvc pull data.dvc` first")
    people = [scenes.portrait(cv2.imread(str(f[0]), cv2.IMREAD_GRAYSCALE)) for f in files]
    cfg = config.compose(["deploy.watch.stats_log=null"])  # a benchmark leaves no logs
    spec = site_model.resolve(cfg, args.model, config.find_root())
    classifier = site_model.load(cfg, spec, root=config.find_root())
    if args.detector:
        classifier = classifier.with_spec(
            detector=config.compose([f"detector={args.detector}"]).detector
        )
    d = cfg.deploy.watch.detect
    print(
        f"watch benchmark: {args.frames} frames per video, model {spec} (detector "
        f"{classifier.spec['detector']['name']}, TTA "
        f"{classifier.spec.get('tta')}), finder min_face {d.min_face} full_every "
        f"{d.full_every}; {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"cores, {torch.get_num_threads()} torch / {cv2.getNumThreads()} OpenCV threads"
    )
    with tempfile.TemporaryDirectory() as tmp:
        table_sizes(cfg, classifier, people, args.frames, Path(tmp))
        table_speed(cfg, classifier, people, args.frames, Path(tmp))
        table_cameras(cfg, classifier, spec, people, args.frames, Path(tmp))
    print("\nrerun: .venv/bin/python benchmarks/bench_watch.py")


if __name__ == "__main__":
    main()
