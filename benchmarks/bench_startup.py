"""Benchmark: the start-up of a stage's process, i.e. the import of its module in a fresh
interpreter (each DVC stage is a new process), and whether it loads the training stack
(Lightning, torchmetrics, albumentations). Stages that only predict should not.

Rerun: .venv/bin/python benchmarks/bench_startup.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import pkgutil
import platform
import subprocess
import sys
import time

from emowatch import stages

# Every stage's module (a DVC stage runs one in a process of its own) and the deploy entry
# points that load a registered model.
MODULES = [f"emowatch.stages.{m.name}" for m in pkgutil.iter_modules(stages.__path__)] + [
    "emowatch.deploy.pyfunc",
    "emowatch.deploy.watch",
]
TRAINING_STACK = ("lightning", "torchmetrics", "albumentations")


def start(module: str) -> tuple[float, str]:
    """Seconds to start an interpreter and import `module`; the training-stack modules it
    loaded."""
    code = (
        f"import sys, {module}; print(','.join(m for m in {TRAINING_STACK!r} if m in sys.modules))"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many starts")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}; best of {args.repeat}")
    print("\n| module | start-up (s) | training stack loaded |\n|---|---:|---|")
    for module in MODULES:
        runs = [start(module) for _ in range(args.repeat)]
        print(f"| {module} | {min(t for t, _ in runs):.2f} | {runs[0][1] or 'no'} |")
    print(f"\nrerun: .venv/bin/python benchmarks/bench_startup.py --repeat {args.repeat}")


if __name__ == "__main__":
    main()
