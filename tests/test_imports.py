"""Stages and deploy code that only predict must not import the training stack: each DVC stage
is a new process, and Lightning (with torchmetrics and torchvision behind it) costs seconds of
start-up per stage and per load of the registered model."""

from __future__ import annotations

import subprocess
import sys

import pytest

TRAINING_STACK = ("lightning", "torchmetrics", "albumentations")


@pytest.mark.parametrize(
    "module",
    [
        "emowatch.stages.evaluate",
        "emowatch.stages.register",
        "emowatch.stages.promote",
        "emowatch.stages.report",
        "emowatch.deploy.pyfunc",
        "emowatch.deploy.watch",
    ],
)
def test_prediction_side_modules_do_not_import_lightning(module):
    code = (
        f"import sys, {module}; print(','.join(m for m in {TRAINING_STACK!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"
