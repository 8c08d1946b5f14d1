"""Benchmark: any model's camera path under a camera's conditions, per detector, with timings.

The suite of the `robustness` stage (emowatch.stages.robustness: the deciding people's photos
changed by each condition of emowatch.evaluation.conditions, the camera path with each face
detector, the largest face on the true one counted as found) for any model URI or trained model
folder, not only the champions, plus the camera path's time per photo under each detector.
Table 1: faces found, accuracy, angry recall and precision per condition and detector.
Table 2: ms per photo or frame (change, find faces as the camera's sweep does, classify).
Rerun: .venv/bin/python benchmarks/bench_robustness.py [--model URI-or-folder] [--splits train val]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import torch

from emowatch import config
from emowatch.config import resolve_path
from emowatch.deploy import site_model
from emowatch.evaluation import conditions, deployed
from emowatch.inference import faces
from emowatch.stages import robustness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the FER2013 champion")
    parser.add_argument("--detectors", nargs="+", default=list(faces.DETECTORS))
    parser.add_argument("--conditions", nargs="+", default=list(conditions.CONDITIONS))
    parser.add_argument("--splits", nargs="+", default=["train", "val"], help="the deciding people")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="albumentations")
    root = config.find_root()
    cfg = config.compose(
        ["deploy.watch.stats_log=null", f"robustness.detectors=[{','.join(args.detectors)}]"]
    )
    model = args.model or f"models:/{cfg.registry.names.fer2013}@champion"
    base = site_model.load(cfg, model, root=root)
    photo_root = resolve_path(cfg.data.photos.root, root)
    items = deployed.photo_set(cfg, base.classes, args.splits, root)
    photos, _ = robustness.with_true_faces(
        photo_root, [p for p in items if p.part == deployed.DECIDE]
    )
    n_angry = sum(p.label == "angry" for p, _, _ in photos)
    print(
        f"robustness benchmark: {model}, {len(photos)} photos of the deciding people "
        f"({', '.join(args.splits)} splits; {n_angry} angry) of {len(items)}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads"
    )
    print("\nTable 1: the camera path under camera conditions, per detector")
    print("| condition | what | detector | faces found | accuracy | angry recall | precision |")
    print("|---|---|---|---|---|---|---|")
    speed = {}
    models = robustness.ways(base, *robustness.scored(cfg))
    for condition in args.conditions:
        for name, classifier in models.items():
            start = time.perf_counter()
            f = robustness.under(classifier, photos, condition, cfg.seed)
            speed.setdefault(name, []).append(1000 * (time.perf_counter() - start) / len(photos))
            print(
                f"| {condition} | {conditions.describe(condition)} | {name} | "
                f"{f['face_rate']:.0%} | {f['accuracy']:.3f} | {f['recall_angry']:.2f} "
                f"({f['angry_caught']}/{f['n_angry']}) | {f['precision_angry']:.2f} |"
            )
    print("\nTable 2: the camera path's time per photo or frame (change, find, classify), mean")
    print("| detector | ms per image, over all conditions |\n|---|---|")
    for name, times in speed.items():
        print(f"| {name} | {np.mean(times):.1f} |")
    print(f"\nrerun: .venv/bin/python benchmarks/bench_robustness.py --model {model}")


if __name__ == "__main__":
    main()
