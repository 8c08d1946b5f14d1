"""Benchmark: FER2013 CSV -> arrays (target ≤ 10 s for 35,887 rows on the 2-core dev machine).

Rerun: .venv/bin/python benchmarks/bench_prepare.py [--csv PATH] [--repeat N]
Without the pulled data it times a synthetic CSV of the same shape (--synthetic ROWS).
"""

from __future__ import annotations

import argparse
import gzip
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from emowatch.data import quality
from emowatch.data.fer2013 import read_csv

DEFAULT_CSV = Path("data/fer2013/fer2013.csv.gz")


def synthetic_csv(path: Path, rows: int, seed: int = 0) -> Path:
    """Write a gzipped CSV in the Kaggle format with random pixels."""
    rng = np.random.default_rng(seed)
    usages = np.array(["Training", "PublicTest", "PrivateTest"])
    with gzip.open(path, "wt") as f:
        f.write("emotion,pixels,Usage\n")
        for _ in range(rows):
            pix = " ".join(map(str, rng.integers(0, 256, 2304)))
            f.write(f"{rng.integers(0, 7)},{pix},{rng.choice(usages)}\n")
    return path


def timed(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--synthetic", type=int, default=35887, help="rows if --csv is absent")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        csv = args.csv
        if not csv.is_file():
            csv = synthetic_csv(Path(tmp) / "synthetic.csv.gz", args.synthetic)
        t_read, table = timed(lambda: read_csv(csv), args.repeat)
        t_q, _ = timed(
            lambda: quality.inspect(table.images, table.labels, table.split, 1.0), args.repeat
        )

    rows = [
        ("read_csv (parse + validate)", t_read, table.n_read / t_read, "≤ 10 s"),
        ("quality.inspect (dups, blanks)", t_q, table.n_read / t_q, ""),
    ]
    print(f"FER2013 prepare benchmark: {csv.name}, {table.n_read} rows, best of {args.repeat}")
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(f"| {'step':<32} | {'seconds':>8} | {'rows/s':>9} | {'target':<7} |")
    print(f"|{'-' * 34}|{'-' * 10}|{'-' * 11}|{'-' * 9}|")
    for name, sec, rate, target in rows:
        print(f"| {name:<32} | {sec:>8.2f} | {rate:>9.0f} | {target:<7} |")
    print("rerun: .venv/bin/python benchmarks/bench_prepare.py")


if __name__ == "__main__":
    main()
