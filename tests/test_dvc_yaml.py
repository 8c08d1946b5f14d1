"""dvc.yaml held by tests: every stage, `foreach` stages included (as DVC resolves them), lists
the Python modules its command runs among its deps, declares params that exist, and writes
where `emowatch.layout` says the artifacts are. An edit to a module a stage imports must make
`dvc status` call the stage changed; a missing dep would leave its outputs stale unseen."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from emowatch import config
from emowatch.layout import Layout
from tests.conftest import REPO
from tests.imports import SRC, closure, module_file

# Modules that shape no stage output, so an edit to them must not re-run the pipeline: the
# command line (it parses options and calls the stage's main(cfg)), exception types, signal
# and child-process handling, dependency warning filters, and the MLflow bookkeeping of
# tracking.runs (what a run logs to MLflow, which DVC does not track). Everything else a stage
# imports is a dep.
NOT_DEPS = (
    "emowatch.cli",
    "emowatch.errors",
    "emowatch.processes",
    "emowatch.warning_filters",
    "emowatch.tracking.runs",
)


@cache
def stages() -> list:
    from dvc.repo import Repo

    return [s for s in Repo(str(REPO)).index.stages if not s.is_data_source]


def stage_module(cmd: str) -> str:
    """`emowatch crop-faces --params ...` -> emowatch.stages.crop_faces"""
    match = re.match(r"emowatch ([a-z-]+)", cmd)
    assert match, f"not an emowatch stage command: {cmd}"
    return f"emowatch.stages.{match.group(1).replace('-', '_')}"


def is_empty_package(path: Path) -> bool:
    """An __init__.py with nothing but a docstring (importing it runs nothing)."""
    body = ast.parse(path.read_text()).body
    return path.name == "__init__.py" and all(
        isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body
    )


# Source files a stage reads without importing them.
READS = {"emowatch.stages.register": ["src/emowatch/deploy/model_code.py"]}


def source_files(cmd: str) -> set[str]:
    """The module files (relative to the project root) a stage command runs or reads."""
    files = set(READS.get(stage_module(cmd), []))
    for name in closure(stage_module(cmd), "emowatch.config"):
        path = module_file(name)
        if path is None or name.startswith(NOT_DEPS) or is_empty_package(path):
            continue
        files.add(path.relative_to(SRC.parent).as_posix())
    return files


def missing_deps(cmd: str, deps: list[str]) -> list[str]:
    """The module files of `cmd` that no dep (a file, or a folder above it) covers."""
    covered = [d.rstrip("/") for d in deps]
    return sorted(
        f for f in source_files(cmd) if not any(f == d or f.startswith(d + "/") for d in covered)
    )


def dep_paths(stage) -> list[str]:
    return [d.def_path for d in stage.deps if type(d).__name__ != "ParamsDependency"]


@pytest.mark.parametrize("stage", stages(), ids=lambda s: s.addressing)
def test_a_stage_lists_every_module_its_command_runs(stage):
    missing = missing_deps(stage.cmd, dep_paths(stage))
    assert not missing, f"{stage.addressing}: add to its deps in dvc.yaml: {missing}"


def test_the_deps_check_finds_a_missing_module():
    """The check can fail: evaluate without its evaluation folder is reported."""
    evaluate = next(s for s in stages() if s.addressing == "evaluate@fer2013-vgg")
    deps = [d for d in dep_paths(evaluate) if d != "src/emowatch/evaluation"]
    assert "src/emowatch/evaluation/deployed.py" in missing_deps(evaluate.cmd, deps)


@pytest.mark.parametrize("stage", stages(), ids=lambda s: s.addressing)
def test_a_stage_declares_params_that_exist(stage):
    params = OmegaConf.load(REPO / "params.yaml")
    declared = [
        key for d in stage.deps if type(d).__name__ == "ParamsDependency" for key in d.params
    ]
    assert declared, f"{stage.addressing} declares no params"
    for key in declared:
        assert OmegaConf.select(params, key) is not None, f"{stage.addressing}: {key} unknown"


def outs(stage) -> set[str]:
    return {o.def_path for o in stage.outs}


def test_dvc_yaml_writes_where_the_layout_says():
    """The artifact layout in Python (emowatch.layout) and in dvc.yaml name the same paths."""
    layout = Layout(config.compose([], root=REPO), REPO)

    def rel(path: Path) -> str:
        return path.relative_to(REPO).as_posix()

    checked = 0
    for stage in stages():
        name, _, key = stage.addressing.partition("@")
        if name in ("train", "finetune"):
            dataset, model = key.split("-") if "-" in key else ("fer2013", key)
            paths = layout.model(dataset, model)
            assert {rel(paths.model_dir), rel(paths.checkpoints)} <= outs(stage), stage.addressing
            assert rel(paths.train_reports / "metrics.json") in outs(stage), stage.addressing
        elif name == "evaluate":
            paths = layout.model(*key.split("-"))
            assert rel(paths.metrics) in outs(stage), stage.addressing
            assert rel(paths.model_dir) in dep_paths(stage), stage.addressing
        elif name == "tune":
            assert rel(layout.best_params(key)) in outs(stage)
            assert rel(layout.tune_reports(key) / "trials.csv") in outs(stage)
        elif name == "register":
            assert rel(layout.register_report(key)) in outs(stage)
        elif name == "promote":
            assert rel(layout.promotion_report(key)) in outs(stage)
            assert rel(layout.register_report(key)) in dep_paths(stage)
        elif name == "report":
            assert rel(layout.results_page) in outs(stage)
            for dataset in ("fer2013", "photos"):
                for path in (layout.register_report(dataset), layout.promotion_report(dataset)):
                    assert rel(path) in dep_paths(stage), f"report: {rel(path)} not a dep"
        else:
            continue
        checked += 1
    assert checked >= 20


def test_a_site_without_photos_writes_every_output_of_the_photos_stages(tmp_path):
    """`stages.no_photos.outputs` names exactly what dvc.yaml declares (outs, metrics, plots)
    for each photos stage, so a skipped stage leaves nothing DVC misses; and writing them
    leaves every one of them there."""
    from emowatch.stages import no_photos

    cfg = config.compose([], root=REPO)
    layout, scratch = Layout(cfg, REPO), Layout(cfg, tmp_path)
    checked = 0
    for stage in stages():
        name, _, key = stage.addressing.partition("@")
        if not key.startswith("photos") or name not in (
            "tune",
            "train",
            "evaluate",
            "register",
            "promote",
        ):
            continue
        model = key.partition("-")[2] or None
        named = {p.relative_to(REPO).as_posix() for p in no_photos.outputs(layout, name, model)}
        assert named == outs(stage), stage.addressing
        for path in no_photos.outputs(scratch, name, model):
            assert no_photos.write(path, "no photos under data/photos: test").exists()
        checked += 1
    assert checked == 9  # tune, 3 trains, 3 evaluates, register, promote


def test_crossval_writes_what_dvc_yaml_declares(tmp_path):
    """`stages.crossval.outputs` names exactly the outs dvc.yaml declares for each crossval
    stage (one per photos candidate); at a site without photos it writes every one of them."""
    from emowatch.stages import crossval

    cfg = config.compose([], root=REPO)
    found = [s for s in stages() if s.addressing.startswith("crossval@")]
    assert sorted(s.addressing for s in found) == sorted(
        f"crossval@{m}" for m in cfg.registry.candidates.photos
    )
    splits = Layout(cfg, tmp_path).photo_splits
    splits.parent.mkdir(parents=True)
    splits.write_text('{"no_photos": "no photos under data/photos: test"}')
    for stage in found:
        model = stage.addressing.partition("@")[2]
        named = {p.relative_to(REPO).as_posix() for p in crossval.outputs(cfg, model, REPO)}
        assert named == outs(stage), stage.addressing
        assert crossval.main(cfg, model, tmp_path) == {
            "skipped": "no photos under data/photos: test"
        }
        assert all(p.exists() for p in crossval.outputs(cfg, model, tmp_path))
