"""The registry and the tracking store: the champion's history, and where everything is."""

from __future__ import annotations

import typer

from emowatch import config
from emowatch.cli.common import DatasetOpt, Overrides, ParamsOpt, fail, load

PANEL = "Registry and tracking"
registry = typer.Typer()


@registry.command()
def history(
    dataset: DatasetOpt, overrides: Overrides = None, params_file: ParamsOpt = None
) -> None:
    """The champion's history, newest first: every promotion, rollback and override with its
    time, reason, commit and MLflow run (the audit tags on the registry versions)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from emowatch.tracking import audit
    from emowatch.tracking.runs import tracking_uri

    cfg = load(params_file, overrides)
    name = cfg.registry.names[dataset]
    client = MlflowClient(tracking_uri(cfg, config.find_root()))
    try:
        events = audit.history(client, name)
    except MlflowException as err:
        fail(f"cannot read {name}: {err}")
    if not events:
        typer.echo(f"{name}: no champion has been set yet (run `make run` or `dvc repro`)")
    for event in events:
        typer.echo(audit.format_event(event))


@registry.command()
def info(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Print where the MLflow store, reports and plots are, and how to browse them."""
    from emowatch.tracking.runs import tracking_uri

    cfg = load(params_file, overrides)
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
