"""Benchmark: would an ensemble pay? Averaged probabilities of the best FER2013 models against
the best one alone, on val only (PublicTest: test decides nothing, so it is not read here).

Each trained model (artifacts/models/fer2013/*) predicts val with the test-time augmentation
its evaluate stage chose on val; the candidates are the best model by val accuracy and the
averages of the top 2, 3, ... models. For each: val accuracy, and precision on angry at the
threshold fitted for recall ≥ `evaluate.target_recall` (in-sample on val, the figure the
threshold search optimises), and the camera cost (forward passes of every member per face,
in ms for a batch of 4 faces, fp32, this machine). An ensemble is worth registering only when it
beats the best single model on val by more than `--margin` at a cost the watcher can carry.

Rerun (after `dvc repro`): .venv/bin/python benchmarks/bench_ensemble.py [--margin 0.005]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from emowatch import config, warning_filters
from emowatch.data.splits import load_dataset
from emowatch.inference.loading import load_trained
from emowatch.inference.predict import predict
from emowatch.inference.threshold import choose_threshold
from emowatch.layout import Layout


def camera_ms(nets: list[torch.nn.Module], views: list[int], repeat: int = 20) -> float:
    """Milliseconds to classify 4 faces with every member (each with its TTA views)."""
    x = torch.zeros(4, 1, 48, 48)
    with torch.inference_mode():
        for net in nets:
            net(x)
        start = time.perf_counter()
        for _ in range(repeat):
            for net, n in zip(nets, views, strict=True):
                for _ in range(n):
                    net(x)
    return 1000 * (time.perf_counter() - start) / repeat


def main() -> None:
    warning_filters.quiet()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--margin", type=float, default=0.005)
    args = parser.parse_args()
    root = config.find_root()
    cfg = config.load(root / "params.yaml", [])
    arrays = load_dataset(cfg, "fer2013", root)
    x, y = arrays.x["val"], arrays.y["val"]
    angry = arrays.classes.index("angry")
    layout = Layout(cfg, root)
    models_dir = layout.models_dir / "fer2013"
    members = {}
    for model_dir in sorted(p for p in models_dir.iterdir() if (p / "model.ckpt").is_file()):
        net, info = load_trained(model_dir)
        metrics = layout.model_of(model_dir).metrics
        tta = json.loads(metrics.read_text())["tta"]["chosen"]
        norm = info["normalize"]
        probs = predict(net, x, norm["mean"], norm["std"], tta)
        members[model_dir.name] = (net, tta, probs, float(np.mean(probs.argmax(1) == y)))
    ranked = sorted(members, key=lambda m: members[m][3], reverse=True)
    views = {"none": 1, "hflip": 2, "tencrop": 10}
    print(f"FER2013 val (PublicTest, {len(y)} faces); members ranked by val accuracy")
    print("| candidate | val acc | angry precision at recall ≥ target (val) | ms / 4 faces |")
    print("|---|---|---|---|")
    rows = []
    for k in range(1, len(ranked) + 1):
        chosen = ranked[:k]
        probs = np.mean([members[m][2] for m in chosen], axis=0)
        acc = float(np.mean(probs.argmax(1) == y))
        point = choose_threshold(probs[:, angry], y == angry, float(cfg.evaluate.target_recall))
        nets = [members[m][0] for m in chosen]
        ms = camera_ms(nets, [views[members[m][1]] for m in chosen])
        name = " + ".join(f"{m} ({members[m][1]})" for m in chosen)
        rows.append((k, acc, point.precision))
        print(f"| {name} | {acc:.4f} | {point.precision:.3f} | {ms:.1f} |")
    single = rows[0]
    best = max(rows[1:], key=lambda r: r[1], default=None)
    if best and best[1] > single[1] + args.margin:
        print(f"\nval says an ensemble of the top {best[0]} pays: +{best[1] - single[1]:.4f}")
    else:
        print(f"\nval says no ensemble pays (none beats {ranked[0]} by more than {args.margin})")
    print(f"rerun: .venv/bin/python benchmarks/bench_ensemble.py --margin {args.margin}")


if __name__ == "__main__":
    main()
