"""`emowatch <command>`: one console script for every pipeline step.

Stage commands take Hydra overrides (`emowatch prepare data.fer2013.labels=ferplus`) composed
over conf/, or `--params params.yaml` to run on the composed file exactly as `dvc repro` does.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from emowatch import config, noise

noise.quiet()  # every command: dependencies' known warnings and tips, by message and module

app = typer.Typer(
    help="emowatch: train, track, promote and deploy facial-expression models that catch "
    "angry customers. Run the whole pipeline with `dvc repro`; each stage is also a command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Overrides = Annotated[
    list[str] | None,
    typer.Argument(
        help="Hydra overrides composed over conf/, e.g. data.fer2013.labels=ferplus "
        "(with --params: plain key=value).",
        show_default=False,
    ),
]
ParamsOpt = Annotated[
    Path | None,
    typer.Option(
        "--params",
        help="Read the composed params file (what dvc.yaml stages use) instead of composing conf/.",
    ),
]


# A Hydra override (key=value, +key=value, ~key=) among the watch command's sources.
OVERRIDE = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.\[\]-]*=")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _load(params: Path | None, overrides: list[str] | None):
    try:
        return config.load(params, overrides or [])
    except Exception as err:  # Hydra/OmegaConf raise many kinds for a bad override
        _fail(f"cannot load the configuration: {err}")


@app.command()
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
                _fail("params.yaml is out of sync with conf/: run `emowatch params`")
            typer.echo("params.yaml matches conf/")
            return
        typer.echo(f"wrote {config.write_params()}")
    except config.ConfigError as err:
        _fail(str(err))


def _run_stage(
    name: str, params_file: Path | None, overrides: list[str] | None, **kwargs: str
) -> None:
    """Load the config and run `emowatch.stages.<name>.main`; data errors exit 1 with a message."""
    from importlib import import_module

    from emowatch.errors import DataError, UnsafeModelError

    cfg = _load(params_file, overrides)
    try:
        import_module(f"emowatch.stages.{name}").main(cfg, **kwargs)
    except (DataError, UnsafeModelError, FileNotFoundError, ValueError) as err:
        _fail(str(err))


DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="fer2013 or photos.")]


@app.command()
def prepare(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Stage `prepare`: validate FER2013 and write train/val/test arrays plus a data report.

    Train = Training, val = PublicTest (for every selection), test = PrivateTest (reported once).
    Rejected rows, duplicates, cross-split leaks, label conflicts and blank images are listed in
    the report; the stage fails when more than data.fer2013.max_bad_fraction is malformed.
    """
    _run_stage("prepare", params_file, overrides)


@app.command("crop-faces")
def crop_faces(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Stage `crop_faces`: detect, crop and split the faces in a business's own photos.

    Every file under data.photos.root gets a status in the crop report (ok, multiple_faces,
    no_face, unreadable, not_an_image); crops of data.photos.classes are split train/val/test,
    subject-independent when data.photos.subject_regex is set. Writes a contact sheet and a
    sheet of the misses.
    """
    _run_stage("crop_faces", params_file, overrides)


@app.command()
def augment(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Stage `augment`: build the albumentations training pipeline from conf/augment, save it
    (training applies it to training data only) and draw a preview grid of one face."""
    _run_stage("augment", params_file, overrides)


@app.command()
def train(
    dataset: DatasetOpt,
    model: Annotated[
        str, typer.Option("--model", "-m", help="A model of the series: cnn1, cnn2, cnn3, vgg.")
    ],
    overrides: Overrides = None,
    params_file: ParamsOpt = None,
) -> None:
    """Stage `train`: train one model of the CNN series on one dataset with Lightning.

    Early stopping and the best checkpoint watch train.monitor on val; the best checkpoint is
    scored on val and test. Logs params, per-epoch curves, classification report, confusion
    matrix, checkpoint and the model to MLflow. A killed run resumes from its last checkpoint.
    """
    _run_stage("train", params_file, overrides, dataset=dataset, model=model)


@app.command()
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
    _run_stage("finetune", params_file, overrides, backbone=backbone)


@app.command()
def tune(dataset: DatasetOpt, overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Stage `tune`: Optuna study of the series' tuned model on one dataset.

    Seeded TPE over per-layer sizes, dropouts, learning rate and batch size (conf/tune), median
    pruning, objective on val. The study is a sqlite file: a killed study continues where it
    stopped. Writes the best params that `train --model cnn3` reads; each trial is an MLflow
    child run.
    """
    _run_stage("tune", params_file, overrides, dataset=dataset)


@app.command()
def evaluate(
    dataset: DatasetOpt,
    model: Annotated[
        str, typer.Option("--model", "-m", help="A trained model: cnn1, cnn2, cnn3, vgg, ...")
    ],
    overrides: Overrides = None,
    params_file: ParamsOpt = None,
) -> None:
    """Stage `evaluate`: every choice on val (TTA by rule, angry threshold, cross-fitted val
    figures), the deployed path on the full photos, and test figures reported once.

    Writes classification report, confusion matrices (deployed rule and argmax), precision-recall
    curve, correct/wrong faces, feature maps, Grad-CAM and behavioural checks; tags the model's
    run with its threshold.
    """
    _run_stage("evaluate", params_file, overrides, dataset=dataset, model=model)


@app.command()
def register(
    dataset: DatasetOpt, overrides: Overrides = None, params_file: ParamsOpt = None
) -> None:
    """Stage `register`: register every evaluated model of a dataset in MLflow (tagged with its
    metrics, threshold, data hash, commit) and alias the best on val `challenger`."""
    _run_stage("register", params_file, overrides, dataset=dataset)


@app.command()
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
    _run_stage("promote", params_file, overrides, dataset=dataset, rollback=rollback)


@app.command()
def report(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Stage `report`: the results table (val, test, deployed path, the gate's paired
    comparison, data checks) generated from the metrics files into reports/results.md."""
    _run_stage("report", params_file, overrides)


@app.command()
def watch(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="One or more sources — a camera index (0), a video file, a stream URL "
            "(rtsp://, http://), a folder/glob of images — then Hydra overrides (key=value).",
            show_default=False,
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="MLflow model URI or trained model folder [default: deploy.watch.model = auto: "
            "the photos champion when this site has photos, else the FER2013 champion].",
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Override the model's angry threshold on P(angry)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the annotated video here (.mp4 or .avi)."),
    ] = None,
    show: Annotated[
        bool, typer.Option("--show", help="Show the annotated video in a window.")
    ] = False,
    log_file: Annotated[
        Path | None, typer.Option("--log", help="Also append the JSON-line events to this file.")
    ] = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="POST every alert as JSON to this URL.")
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Serve a live page for staff: the annotated video, faces now, and the alert "
            "log with an Acknowledge button.",
        ),
    ] = False,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Address of the page [default: deploy.watch.serve.host, "
            "127.0.0.1]; another one needs --expose.",
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port of the page [default: 8765].")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Token the page and its API require (default: $EMOWATCH_TOKEN; none if unset).",
        ),
    ] = None,
    expose: Annotated[
        bool,
        typer.Option("--expose", help="Allow --host to be an address other machines reach."),
    ] = False,
    params_file: ParamsOpt = None,
) -> None:
    """Watch cameras, videos, streams or images: faces, emotions and debounced angry alerts.

    Several sources run in one process with one model (events carry the camera's name; --out
    writes one file per camera).

    Prints one JSON line per event (track_started, emotion_changed, track_ended, alert,
    frame_error) and a closing summary with frames/s. Alert rules, sinks and the model are in
    conf/deploy (override with deploy.watch.alerts.k=2 and the like). Privacy: nothing is written
    to disk unless asked (--out, --log, deploy.watch.alerts.include_snapshot; with --serve, the
    alert log of alerts and acknowledgements, without images). --serve keeps only the frame
    being streamed.
    """
    from emowatch.deploy import watch as watcher
    from emowatch.deploy.server import ServeError, ServeOptions
    from emowatch.deploy.sources import SourceError

    overrides = [a for a in sources if OVERRIDE.match(a)]
    sources = [a for a in sources if not OVERRIDE.match(a)]
    if not sources:
        _fail("name at least one source (a camera index, a video, a stream URL, images)")
    cfg = _load(params_file, overrides)
    if not serve and (host or port or token or expose):
        _fail("--host, --port, --token and --expose go with --serve")
    options = ServeOptions(host, port, token, expose) if serve else None
    if len(sources) > 1:
        if show:
            _fail("--show takes one source: use --serve to see several cameras on one page")
        try:
            watcher.main_many(
                cfg, sources, model, threshold, out, log_file, webhook, config.find_root(), options
            )
        except (watcher.WatchError, ServeError, FileNotFoundError, ValueError) as err:
            _fail(str(err))
        return
    try:
        watcher.main(
            cfg,
            sources[0],
            model=model,
            threshold=threshold,
            out=out,
            show=show,
            log_file=log_file,
            webhook=webhook,
            root=config.find_root(),
            serve=options,
        )
    except (SourceError, ServeError, watcher.WatchError, FileNotFoundError, ValueError) as err:
        _fail(str(err))


@app.command("site-model")
def site_model_cmd(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Print the model URI `watch` and `make serve` use when none is named (the reason on
    stderr): the photos champion when this site has photos, else the FER2013 champion."""
    from emowatch.deploy import site_model

    cfg = _load(params_file, overrides)
    choice = site_model.choose(cfg, config.find_root())
    typer.echo(f"{choice.uri}: {choice.reason}", err=True)
    typer.echo(choice.uri)


@app.command()
def drift(
    hours: Annotated[
        float | None, typer.Option(help="The window [default: retrain.drift.window_hours].")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="The watched model [default: deploy.watch.model].")
    ] = None,
    overrides: Overrides = None,
    params_file: ParamsOpt = None,
) -> None:
    """Compare the watcher's hourly log with the model's distributions on the camera path over
    the photos of the people who may decide (PSI). Exit 0: no drift; 3: drift; 1: error."""
    import json

    from emowatch import drift as drifting
    from emowatch.errors import DataError

    cfg = _load(params_file, overrides)
    try:
        verdict = drifting.check(cfg, config.find_root(), hours, model)
    except (DataError, OSError, ValueError) as err:
        _fail(f"cannot check drift: {err}")
    typer.echo(json.dumps(verdict))
    state = "DRIFT" if verdict["drifted"] else "no drift"
    typer.echo(f"{state}: {verdict['reason']} ({verdict['faces']} faces in {verdict['hours']:g} h)")
    raise typer.Exit(3 if verdict["drifted"] else 0)


@app.command()
def retrain(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would run; change nothing.")
    ] = False,
    experiment: Annotated[
        bool,
        typer.Option(
            "--experiment",
            help="Run as a DVC experiment (dvc exp run --temp) instead of changing the workspace.",
        ),
    ] = False,
    pull: Annotated[
        bool | None,
        typer.Option(
            "--pull/--no-pull",
            help="dvc pull the data first [default: retrain.pull]; --no-pull: use the data "
            "present.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Re-run every stage even if nothing changed.")
    ] = False,
    if_drift: Annotated[
        bool,
        typer.Option("--if-drift", help="Only when `emowatch drift` finds drift (else exit 11)."),
    ] = False,
    overrides: Overrides = None,
    params_file: ParamsOpt = None,
) -> None:
    """Pull, reproduce and promote if anything changed: one idempotent command for schedulers.

    Exit codes: 0 promoted, 1 failed, 10 ran but kept the champion, 11 nothing to do, 12
    (--dry-run) stages would run, 13 dvc pull failed, 75 another retrain is running, 130/143
    stopped by SIGINT/SIGTERM (children stopped, MLflow runs KILLED). The report (data hash, new
    photos, changes, champions before/after, the gate's reasons) goes to reports/retrain/ and
    to MLflow.
    """
    from emowatch import retrain as retraining

    cfg = _load(params_file, overrides)
    outcome = retraining.main(cfg, config.find_root(), dry_run, experiment, pull, force, if_drift)
    raise typer.Exit(int(outcome))


feedback_app = typer.Typer(
    help="Staff feedback from the live page: review the kept faces, accept or decline them, "
    "import the accepted ones into data/photos/<class>/ for the next retrain.",
    no_args_is_help=True,
)
app.add_typer(feedback_app, name="feedback")
IdsArg = Annotated[list[str], typer.Argument(help="Alert ids (from `emowatch feedback review`).")]
OverrideOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--override", "-o", help="A Hydra override (repeatable), e.g. -o paths.data_dir=..."
    ),
]


def _feedback(params_file: Path | None, overrides: list[str] | None):
    from emowatch.deploy.feedback import FeedbackStore

    cfg = _load(params_file, overrides)
    fcfg = cfg.deploy.watch.feedback
    root = config.find_root()
    return cfg, root, FeedbackStore(config.resolve_path(fcfg.dir, root), float(fcfg.keep_days))


def _decide(ids, accept: bool, cls: str | None, params_file, overrides) -> int:
    from emowatch.deploy.feedback import FeedbackError

    cfg, _, store = _feedback(params_file, overrides)
    try:
        return store.decide(ids, accept, cls, list(cfg.data.photos.classes))
    except FeedbackError as err:
        _fail(str(err))
    return 0


@feedback_app.command("review")
def feedback_review(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """List the kept faces of marked alerts (expired ones are deleted first)."""
    import datetime as dt

    _, _, store = _feedback(params_file, overrides)
    expired = store.expire()
    if expired:
        typer.echo(f"deleted {len(expired)} face(s) kept longer than {store.keep_days:g} days")
    items = store.items()
    if not items:
        typer.echo(f"no feedback faces in {store.folder}")
    for m in items:
        when = dt.datetime.fromtimestamp(m["marked_at"], dt.UTC).isoformat(timespec="seconds")
        target = f" -> {m['class']}" if m["status"] == "accepted" else ""
        typer.echo(
            f"{m['alert_id']}  {m['status']}{target}  marked {m['label']} by {m['by']} at "
            f"{when}  camera {m['camera']}  {store.folder / (m['alert_id'] + '.png')}"
        )


@feedback_app.command("accept")
def feedback_accept(
    ids: IdsArg,
    as_class: Annotated[
        str | None,
        typer.Option("--as", help="The class the face shows (needed for a 'not angry' mark)."),
    ] = None,
    overrides: OverrideOpt = None,
    params_file: ParamsOpt = None,
) -> None:
    """Accept faces for training (a 'confirmed angry' one goes to angry unless --as says)."""
    n = _decide(ids, True, as_class, params_file, overrides)
    typer.echo(f"accepted {n}; `emowatch feedback import` moves them into the photos")


@feedback_app.command("decline")
def feedback_decline(
    ids: IdsArg, overrides: OverrideOpt = None, params_file: ParamsOpt = None
) -> None:
    """Decline faces: deleted at the next import."""
    n = _decide(ids, False, None, params_file, overrides)
    typer.echo(f"declined {n}; they are deleted at the next `emowatch feedback import`")


@feedback_app.command("import")
def feedback_import(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Move the accepted faces into data/photos/<class>/ and delete the declined and expired."""
    cfg, root, store = _feedback(params_file, overrides)
    expired = store.expire()
    done = store.import_into(
        config.resolve_path(cfg.data.photos.root, root),
        str(cfg.deploy.watch.feedback.subject_prefix),
    )
    for path in done["imported"]:
        typer.echo(f"imported {path}")
    typer.echo(
        f"imported {len(done['imported'])}, deleted {done['deleted_declined']} declined and "
        f"{len(expired)} expired; {len(store.items())} still pending"
    )
    if done["imported"]:
        typer.echo(
            "next: dvc add data && git commit data.dvc -m 'feedback photos' && emowatch retrain"
        )


@app.command()
def history(
    dataset: DatasetOpt, overrides: Overrides = None, params_file: ParamsOpt = None
) -> None:
    """The champion's history, newest first: every promotion, rollback and override with its
    time, reason, commit and MLflow run (the audit tags on the registry versions)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from emowatch.tracking import audit
    from emowatch.tracking.runs import tracking_uri

    cfg = _load(params_file, overrides)
    name = cfg.registry.names[dataset]
    client = MlflowClient(tracking_uri(cfg, config.find_root()))
    try:
        events = audit.history(client, name)
    except MlflowException as err:
        _fail(f"cannot read {name}: {err}")
    if not events:
        typer.echo(f"{name}: no champion has been set yet (run `make run` or `dvc repro`)")
    for event in events:
        typer.echo(audit.format_event(event))


@app.command()
def info(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Print where the MLflow store, reports and plots are, and how to browse them."""
    from emowatch.tracking.runs import tracking_uri

    cfg = _load(params_file, overrides)
    root = config.find_root()
    uri = tracking_uri(cfg, root)
    typer.echo(f"project root : {root}")
    typer.echo(f"MLflow store : {uri}")
    typer.echo(f"MLflow files : {config.resolve_path(cfg.tracking.artifacts_dir, root)}")
    typer.echo(f"reports      : {config.resolve_path(cfg.paths.reports_dir, root)}")
    typer.echo(f"artifacts    : {config.resolve_path(cfg.paths.artifacts_dir, root)}")
    typer.echo("metrics      : dvc metrics show   |   plots: dvc plots show")
    typer.echo(f"browse runs  : mlflow ui --backend-store-uri {uri} --port 5000, then open")
    typer.echo(f"               {runs_page(cfg, uri, 'http://127.0.0.1:5000')}")
    _print_champions(cfg, uri)


def runs_page(cfg, uri: str, base: str) -> str:
    """The MLflow UI's runs table of the experiment. MLflow 3.x opens an experiment on a GenAI
    overview unless the link names the workflow type (the experiment's kind tag alone does not
    change that; tried with 3.17)."""
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(uri).get_experiment_by_name(str(cfg.tracking.experiment))
    if exp is None:
        return f"{base}/#/experiments?workflowType=machine_learning"
    return f"{base}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"


def _print_champions(cfg, uri: str) -> None:
    """The registered models with their champion and challenger, where the store has them."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from emowatch.tracking.registry import CHALLENGER, CHAMPION, get_alias

    client = MlflowClient(uri)
    for name in cfg.registry.names.values():
        try:
            client.get_registered_model(name)
        except MlflowException:  # not registered yet
            continue
        for alias in (CHAMPION, CHALLENGER):
            v = get_alias(client, name, alias)
            if v is None:
                typer.echo(f"{name}@{alias}: none")
                continue
            acc, rec, prec = (
                v.tags.get(f"test_{k}", "?")
                for k in ("accuracy", "recall_angry_at_threshold", "precision_angry_at_threshold")
            )
            threshold = v.tags.get("threshold_angry")
            typer.echo(
                f"{name}@{alias}: v{v.version} ({v.tags.get('model')}) test accuracy {acc}, "
                f"angry recall {rec} / precision {prec} at threshold {threshold}"
            )
            if alias == CHAMPION and v.tags.get("model_card"):
                typer.echo(
                    f"  model card: {v.tags['model_card']} (also the version's description in "
                    f"the MLflow UI); history: emowatch history -d {v.tags.get('dataset', 'D')}"
                )


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
