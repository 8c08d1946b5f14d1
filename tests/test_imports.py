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


# The floors of the house, lowest first: a package imports only from its own floor's package
# and from the floors below (read from the source, lazy imports included).
LAYERS = (
    ("config", "errors", "files", "figures", "layout", "processes", "targets", "warning_filters"),
    ("data", "models"),
    ("inference",),
    ("training", "evaluation"),
    ("tracking",),
    ("deploy",),
    ("stages",),
    ("drift", "new_photos"),
    ("retrain",),
    ("cli",),
)
BASE = LAYERS[0]


def floor_of(module: str) -> tuple[int, str]:
    """(floor, package) of an emowatch module; the base modules count as one package."""
    top = module.split(".")[1]
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i, "base" if layer is BASE else top
    raise AssertionError(f"{module} is on no floor: add its package to LAYERS")


def test_imports_run_down_the_floors_only():
    from tests.imports import all_modules, imports_of

    wrong = []
    for module in all_modules():
        if module == "emowatch":
            continue
        floor, package = floor_of(module)
        for imported in imports_of(module):
            their_floor, their_package = floor_of(imported)
            if their_floor > floor or (their_floor == floor and their_package != package):
                wrong.append(f"{module} -> {imported}")
    assert not wrong, "imports that run up or across a floor:\n" + "\n".join(sorted(wrong))


@pytest.mark.parametrize(
    "module", ["emowatch.drift", "emowatch.deploy.site_model", "emowatch.evaluation.deployed"]
)
def test_model_choice_and_drift_do_not_load_the_watcher(module):
    from tests.imports import closure

    assert "emowatch.deploy.watch" not in closure(module)


def test_the_floor_rule_catches_an_import_that_runs_up(tmp_path, monkeypatch):
    """The check can fail: an inference module that imported deploy would be reported."""
    from tests import imports

    monkeypatch.setattr(
        imports,
        "imports_of",
        lambda m: (
            frozenset({"emowatch.deploy.watch"}) if m.endswith("inference.faces") else frozenset()
        ),
    )
    with pytest.raises(AssertionError, match=r"inference\.faces -> emowatch\.deploy\.watch"):
        test_imports_run_down_the_floors_only()
