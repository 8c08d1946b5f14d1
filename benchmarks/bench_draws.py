"""Benchmark: how much a photos model's out-of-fold evidence moves between draws of its recipe.

The site goal (angry recall >= 0.80 at precision >= 0.60, out of fold) is read from one
`crossval` run. This re-runs that stage's people cross-validation for photos model `--model`
with other seeds (each fold's fine-tune drawn again: its augmentation, dropout, batch order),
the same people and folds, the FER2013 start and tuned params as they are, then fits the
threshold and the CLAHE choice on the out-of-fold scores as the evaluate stage does
(`evaluate.people_evidence`). Everything it writes goes to a temporary folder (its own MLflow
store too); the project's outputs are not touched.
Table: per seed, angry caught out of fold, recall, precision, accuracy, threshold, whether the
site goal holds; then the spread. Needs `make run` first (the photos model and its crossval).
Rerun: .venv/bin/python benchmarks/bench_draws.py [--model cnn3] [--seeds 42 43 44 45 46 47 48 49]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from emowatch import config
from emowatch.evaluation import deployed
from emowatch.files import read_json
from emowatch.inference.loading import load_trained
from emowatch.layout import Layout
from emowatch.stages import crossval, evaluate


def draw(model: str, seed: int, tmp: Path, root: Path) -> dict:
    """Photos model `model`'s out-of-fold figures with every fold fine-tuned under `seed`
    (its outputs under tmp/<seed>, its runs in tmp's MLflow store, one for every draw: MLflow
    keeps the first store's URI in the environment)."""
    cfg = config.compose(
        [
            f"seed={seed}",
            f"evaluate.people_cv.dir={tmp / str(seed) / 'reports'}",
            f"evaluate.people_cv.state_dir={tmp / str(seed) / 'state'}",
            f"tracking.db={tmp / 'mlflow.db'}",
            f"tracking.artifacts_dir={tmp / 'mlartifacts'}",
        ]
    )
    paths = Layout(cfg, root).model("photos", model)
    tta = read_json(paths.metrics)["tta"]["chosen"]  # the evaluate stage's choice, on val
    net, info = load_trained(paths.model_dir)
    crossval.main(cfg, model, root)
    out = tmp / str(seed) / "evaluate"
    out.mkdir(parents=True)
    threshold, found = evaluate.people_evidence(cfg, net, info, tta, model, out, root, 0.5)
    return {"threshold": threshold} | found[deployed.DECIDE]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn3")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(42, 50)))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    root = config.find_root()
    goal = config.compose([]).report.goals.site_model
    print(
        f"draws benchmark: photos {args.model} out of fold, seeds {args.seeds}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads"
    )
    rows, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="emowatch-draws-") as tmp:
        os.environ.pop("MLFLOW_TRACKING_URI", None)  # the draws' own store, not the project's
        rows = [(seed, draw(args.model, seed, Path(tmp), root)) for seed in args.seeds]
    print(
        f"\n| seed | angry caught | recall | precision | accuracy | threshold | site goal "
        f"(recall ≥ {goal.recall_angry} at precision ≥ {goal.precision_angry}) |"
    )
    print("|---|---|---|---|---|---|---|")
    holds = 0
    for seed, f in rows:
        ok = f["recall_angry"] >= goal.recall_angry and f["precision_angry"] >= goal.precision_angry
        holds += ok
        print(
            f"| {seed} | {f['angry_caught']} of {f['n_angry']} | {f['recall_angry']:.2f} | "
            f"{f['precision_angry']:.2f} | {f['accuracy']:.2f} | {f['threshold']:.3f} | "
            f"{'yes' if ok else 'no'} |"
        )
    for key in ("recall_angry", "precision_angry", "accuracy"):
        values = [f[key] for _, f in rows]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(
            f"{key}: mean {statistics.mean(values):.2f}, sd {spread:.2f}, "
            f"min {min(values):.2f}, max {max(values):.2f}"
        )
    print(f"site goal holds on {holds} of {len(rows)} draws")
    print(f"wall time: {time.perf_counter() - start:.0f} s")
    print(
        f"rerun: .venv/bin/python benchmarks/bench_draws.py --model {args.model} "
        f"--seeds {' '.join(map(str, args.seeds))}"
    )


if __name__ == "__main__":
    main()
