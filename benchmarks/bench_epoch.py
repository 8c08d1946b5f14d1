"""Benchmark: where a training epoch's time goes (Lightning's SimpleProfiler), and what the
settings that could speed it up buy: precision (bf16 autocast or fp32), channels-last memory
format, DataLoader workers, torch threads.

Each setting trains a model of conf/ (default `vgg`) for `--batches` FER2013 training batches
(with the model's augmentations; random faces without the pulled data) and validates on
`--val-batches`, in a Trainer with the profiler on. The table gives images/s and the share of
the wall time in: fetching training batches (loading + albumentations in the main process),
the training step (forward + loss), backward, the optimizer step, and validation. The epoch
column extrapolates one epoch of the full training split plus validation.

Rerun: .venv/bin/python benchmarks/bench_epoch.py [--model vgg] [--batches 40]
       [--val-batches 8] [key=value ...]  (params.yaml overrides)
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.profilers import SimpleProfiler

from emowatch import config, warning_filters
from emowatch.data import augmentation
from emowatch.data.datamodule import FaceDataModule
from emowatch.data.splits import SplitArrays, load_dataset
from emowatch.errors import DataError
from emowatch.training.fit import build_module
from emowatch.training.precision import native_bf16

# (label, precision, channels_last, num_workers, threads)
SETTINGS = (
    ("bf16, channels-last (default)", "bf16-mixed", True, 0, None),
    ("bf16, NCHW (before)", "bf16-mixed", False, 0, None),
    ("fp32, channels-last", "32-true", True, 0, None),
    ("fp32, NCHW", "32-true", False, 0, None),
    ("bf16, channels-last, 1 worker", "bf16-mixed", True, 1, None),
    ("bf16, channels-last, 1 thread", "bf16-mixed", True, 0, 1),
)
PARTS = {  # profiler action (suffix) -> column
    "train_dataloader_next": "fetch",
    "training_step": "step",
    "backward": "backward",
    "optimizer_step": "optimizer",
    "run_training_batch": "batch",
    "val_next": "val fetch",
    "validation_step": "val step",
}


def faces(cfg, root: Path) -> tuple[SplitArrays, str, int]:
    """FER2013's prepared arrays, or random faces; and the full training split's size."""
    try:
        arrays = load_dataset(cfg, "fer2013", root)
        return arrays, "FER2013", len(arrays.y["train"])
    except (DataError, OSError, ValueError):
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 256, (4096, 48, 48), dtype=np.uint8), rng.integers(0, 7, 4096)
        classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
        split = {s: x for s in ("train", "val", "test")}
        return SplitArrays(split, {s: y for s in split}, classes), "random faces", 27443


def profile(cfg, mcfg, arrays, augment, setting, batches: int, val_batches: int) -> dict:
    """Seconds per part of one profiled run of `batches` training batches."""
    _, precision, channels_last, workers, threads = setting
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    cfg.train.channels_last = channels_last
    norm = cfg.train.fer2013.normalize
    batch = int(cfg.train.fer2013.batch_size)
    dm = FaceDataModule(arrays, batch, norm.mean, norm.std, augment, num_workers=workers)
    L.seed_everything(cfg.seed, verbose=False)
    module = build_module(cfg, mcfg, arrays, "fer2013", None)
    profiler = SimpleProfiler(dirpath=tempfile.gettempdir(), filename="bench_epoch_profile")
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision=precision, max_epochs=1,
        limit_train_batches=batches, limit_val_batches=val_batches, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, profiler=profiler,
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    torch.set_num_threads(before)
    out = {col: 0.0 for col in PARTS.values()}
    for action, durations in profiler.recorded_durations.items():
        for suffix, col in PARTS.items():
            if action.endswith(suffix):
                out[col] += float(np.sum(durations[1:]))  # the first call warms up
    out["per_batch"] = out["batch"] / (batches - 1)
    out["per_val_batch"] = (out["val step"] + out["val fetch"]) / max(val_batches - 1, 1)
    return out


def main() -> None:
    warning_filters.quiet()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--val-batches", type=int, default=8)
    parser.add_argument("overrides", nargs="*", help="key=value over params.yaml")
    args = parser.parse_args()
    root = config.find_root()
    cfg = config.load(root / "params.yaml", args.overrides)
    mcfg = cfg.models[args.model]
    arrays, source, n_train = faces(cfg, root)
    augment = augmentation.for_model(cfg, mcfg.get("augment"), root, build_if_missing=True)
    batch = int(cfg.train.fer2013.batch_size)
    n_val = len(arrays.y["val"])
    print(
        f"model {args.model}, batch {batch}, {args.batches} training + {args.val_batches} val "
        f"batches ({source}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.machine()}, native bf16: {native_bf16()}"
    )
    print("| setting | images/s | fetch | step | backward | optimizer | epoch (s) |")
    print("|---|---|---|---|---|---|---|")
    for setting in SETTINGS:
        got = profile(cfg, mcfg, arrays, augment, setting, args.batches, args.val_batches)
        batch_s = got["batch"] + got["fetch"]
        shares = [100 * got[c] / batch_s for c in ("fetch", "step", "backward")]
        optimizer = 100 * (got["optimizer"] - got["step"] - got["backward"]) / batch_s
        epoch = (n_train / batch) * (got["per_batch"] + got["fetch"] / (args.batches - 1))
        epoch += (n_val / batch) * got["per_val_batch"]
        rate = batch * (args.batches - 1) / batch_s
        print(
            f"| {setting[0]} | {rate:.0f} | {shares[0]:.0f}% | {shares[1]:.0f}% | "
            f"{shares[2]:.0f}% | {optimizer:.0f}% | {epoch:.0f} |"
        )
    extra = " ".join(args.overrides)
    print(
        f"\nrerun: .venv/bin/python benchmarks/bench_epoch.py --model {args.model} "
        f"--batches {args.batches} --val-batches {args.val_batches} {extra}".rstrip()
    )


if __name__ == "__main__":
    main()
