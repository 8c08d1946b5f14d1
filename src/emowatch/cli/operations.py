"""Operations: scheduled retraining, drift checks, and staff feedback becoming training data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emowatch import config
from emowatch.cli.common import OverrideOpt, Overrides, ParamsOpt, fail, load

PANEL = "Operations"
operations = typer.Typer()


@operations.command()
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

    cfg = load(params_file, overrides)
    try:
        verdict = drifting.check(cfg, config.find_root(), hours, model)
    except (DataError, OSError, ValueError) as err:
        fail(f"cannot check drift: {err}")
    typer.echo(json.dumps(verdict))
    state = "DRIFT" if verdict["drifted"] else "no drift"
    typer.echo(f"{state}: {verdict['reason']} ({verdict['faces']} faces in {verdict['hours']:g} h)")
    raise typer.Exit(3 if verdict["drifted"] else 0)


@operations.command()
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
    (--dry-run) stages would run, 13 dvc pull failed, 14 the MLflow tracking store does not
    answer, 75 another retrain is running, 130/143
    stopped by SIGINT/SIGTERM (children stopped, MLflow runs KILLED). The report (data hash, new
    photos, changes, champions before/after, the gate's reasons) goes to reports/retrain/ and
    to MLflow.
    """
    from emowatch import retrain as retraining

    cfg = load(params_file, overrides)
    outcome = retraining.main(cfg, config.find_root(), dry_run, experiment, pull, force, if_drift)
    raise typer.Exit(int(outcome))


feedback_app = typer.Typer(
    help="Staff feedback from the live page: review the kept faces, accept or decline them, "
    "import the accepted ones into data/photos/<class>/ for the next retrain.",
    no_args_is_help=True,
)
operations.add_typer(feedback_app, name="feedback")
IdsArg = Annotated[list[str], typer.Argument(help="Alert ids (from `emowatch feedback review`).")]


def _feedback(params_file: Path | None, overrides: list[str] | None):
    from emowatch.deploy.feedback import FeedbackStore

    cfg = load(params_file, overrides)
    fcfg = cfg.deploy.watch.feedback
    root = config.find_root()
    return cfg, root, FeedbackStore(config.resolve_path(fcfg.dir, root), float(fcfg.keep_days))


def _decide(ids, accept: bool, cls: str | None, params_file, overrides) -> int:
    from emowatch.deploy.feedback import FeedbackError

    cfg, _, store = _feedback(params_file, overrides)
    try:
        return store.decide(ids, accept, cls, list(cfg.data.photos.classes))
    except FeedbackError as err:
        fail(str(err))
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
    if store.unreadable:
        names = ", ".join(str(p) for p in store.unreadable[:5])
        typer.secho(
            f"{len(store.unreadable)} unreadable feedback record(s), left for you to look at: "
            f"{names}",
            fg=typer.colors.YELLOW,
            err=True,
        )
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
