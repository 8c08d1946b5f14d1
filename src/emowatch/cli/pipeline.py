"""The pipeline's commands: one per DVC stage (what `dvc repro` runs, with `--params
params.yaml`), and `params`, which composes conf/ into params.yaml."""

from __future__ import annotations

from typing import Annotated

import typer

from emowatch import config
from emowatch.cli.common import DatasetOpt, ModelOpt, Overrides, ParamsOpt, fail, run_stage

PANEL = "Pipeline stages (dvc repro runs these)"
pipeline = typer.Typer()


@pipeline.command()
def params(
    check: Annotated[
        bool,
        typer.Option("--check", help="Only check that params.yaml matches conf/; exit 1 if not."),
    ] = False,
) -> None:
    """Compose conf/ into params.yaml (the file DVC tracks), or check that it is in sync."""
    try:
        if check:
            if not config.params_in_sync():
                fail("params.yaml is out of sync with conf/: run `emowatch params`")
            typer.echo("params.yaml matches conf/")
            return
        typer.echo(f"wrote {config.write_params()}")
    except config.ConfigError as err:
        fail(str(err))


@pipeline.command()
def prepare(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Stage `prepare`: validate FER2013 and write train/val/test arrays plus a data report.

    Train = Training, val = PublicTest (for every selection), test = PrivateTest (reported once).
    Rejected rows, duplicates, cross-split leaks, label conflicts and blank images are listed in
    the report; the stage fails when more than data.fer2013.max_bad_fraction is malformed.
    """
    run_stage("prepare", params_file, overrides)


@pipeline.command("crop-faces")
def crop_faces(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Stage `crop_faces`: detect, crop and split the faces in a business's own photos.

    Every file under data.photos.root gets a status in the crop report (ok, multiple_faces,
    no_face, unreadable, not_an_image); crops of data.photos.classes are split train/val/test,
    subject-independent when data.photos.subject_regex is set. Writes a contact sheet and a
    sheet of the misses.
    """
    run_stage("crop_faces", params_file, overrides)


@pipeline.command()
def augment(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Stage `augment`: build the albumentations training pipeline from conf/augment, save it
    (training applies it to training data only) and draw a preview grid of one face."""
    run_stage("augment", params_file, overrides)


@pipeline.command()
def train(
    dataset: DatasetOpt,
    model: ModelOpt,
    overrides: Overrides = None,
    params_file: ParamsOpt = None,
) -> None:
    """Stage `train`: train one model of the CNN series on one dataset with Lightning.

    Early stopping and the best checkpoint watch train.monitor on val; the best checkpoint is
    scored on val and test. Logs params, per-epoch curves, classification report, confusion
    matrix, checkpoint and the model to MLflow. A killed run resumes from its last checkpoint.
    """
    run_stage("train", params_file, overrides, dataset=dataset, model=model)


@pipeline.command()
def finetune(
    backbone: Annotated[
        str,
        typer.Option("--backbone", "-b", help="A backbone model: mobilenet_v2, resnet50."),
    ],
    overrides: Overrides = None,
    params_file: ParamsOpt = None,
) -> None:
    """Stage `finetune`: transfer learning of a torchvision backbone on FER2013.

    Phase 1 trains the new head with the backbone frozen (BatchNorm in eval mode), phase 2 also
    the top blocks at a lower learning rate (conf/net/<backbone>.yaml). Weights: imagenet from
    torchvision's cache (`make weights` for MobileNetV2), none, or a path; never downloaded.
    """
    run_stage("finetune", params_file, overrides, backbone=backbone)


@pipeline.command()
def tune(dataset: DatasetOpt, overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Stage `tune`: Optuna study of the series' tuned model on one dataset.

    Seeded TPE over per-layer sizes, dropouts, learning rate and batch size (conf/tune), median
    pruning, objective on val. The study is a sqlite file: a killed study continues where it
    stopped. Writes the best params that `train --model cnn3` reads; each trial is an MLflow
    child run.
    """
    run_stage("tune", params_file, overrides, dataset=dataset)


@pipeline.command()
def crossval(model: ModelOpt, overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Stage `crossval`: a photos model cross-validated by person on the camera path.

    GroupKFold over every non-test person (evaluate.people_cv.folds); each fold a seeded
    fine-tune from the FER2013 start, stopped early on another fold's people, its held-out
    people's full photos scored on the camera path under every CLAHE and TTA option. Writes the
    out-of-fold records that evaluate fits the photos model's threshold on; a killed run resumes
    at its first unfinished fold.
    """
    run_stage("crossval", params_file, overrides, model=model)


@pipeline.command()
def evaluate(
    dataset: DatasetOpt,
    model: ModelOpt,
    overrides: Overrides = None,
    params_file: ParamsOpt = None,
) -> None:
    """Stage `evaluate`: every choice on val (TTA by rule, angry threshold, cross-fitted val
    figures), the deployed path on the full photos, and test figures reported once.

    Writes classification report, confusion matrices (deployed rule and argmax), precision-recall
    curve, correct/wrong faces, feature maps, Grad-CAM and behavioural checks; tags the model's
    run with its threshold.
    """
    run_stage("evaluate", params_file, overrides, dataset=dataset, model=model)


@pipeline.command()
def register(
    dataset: DatasetOpt, overrides: Overrides = None, params_file: ParamsOpt = None
) -> None:
    """Stage `register`: register every evaluated model of a dataset in MLflow (tagged with its
    metrics, threshold, data hash, commit) and alias the best on val `challenger`."""
    run_stage("register", params_file, overrides, dataset=dataset)


@pipeline.command()
def promote(
    dataset: DatasetOpt,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Make the previous champion champion again.")
    ] = False,
    overrides: Overrides = None,
    params_file: ParamsOpt = None,
) -> None:
    """Promote the challenger to `champion` if it passes the gate (conf/registry: cross-fitted
    val recall, deployed-path recall, and not worse than the champion beyond noise in a paired
    comparison on val); the replaced champion becomes `previous`. Prints and records the
    decision, its reason and the comparison's intervals."""
    run_stage("promote", params_file, overrides, dataset=dataset, rollback=rollback)


@pipeline.command()
def robustness(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Stage `robustness`: each champion's camera path on the deciding people's photos under a
    camera's conditions (light, blur, noise, JPEG, tilt, a covered face, a small face), with each
    face detector (conf/robustness)."""
    run_stage("robustness", params_file, overrides)


@pipeline.command()
def scenarios(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Stage `scenarios`: customer visits made from the people's photos, rendered to video and
    watched with the site's model; angry visits alerted in time and false alarms per
    camera-hour under each alert rule, the rule chosen on the deciding people (conf/scenarios)."""
    run_stage("scenarios", params_file, overrides)


@pipeline.command()
def report(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Stage `report`: the results table (val, test, deployed path, the gate's paired
    comparison, data checks) generated from the metrics files into docs/results.md."""
    run_stage("report", params_file, overrides)
