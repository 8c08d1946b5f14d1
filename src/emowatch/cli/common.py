"""What every command shares: the override and --params options, loading the configuration,
running a stage, and failing with one line on stderr (exit 1)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, NoReturn

import typer

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
DATASETS = ("fer2013", "photos")


def check_dataset(value: str) -> str:
    if value not in DATASETS:
        raise typer.BadParameter(f"{value!r} is not a dataset: {' or '.join(DATASETS)}")
    return value


DatasetOpt = Annotated[
    str, typer.Option("--dataset", "-d", help="fer2013 or photos.", callback=check_dataset)
]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", "-m", help="A model: cnn1, cnn2, cnn3, vgg (and on FER2013 the backbones)."
    ),
]
OverrideOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--override", "-o", help="A Hydra override (repeatable), e.g. -o paths.data_dir=..."
    ),
]

# A Hydra override (key=value, +key=value, ~key=) among a command's positional arguments.
OVERRIDE = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.\[\]-]*=")


def fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def load(params: Path | None, overrides: list[str] | None):
    from emowatch.cli import schema

    try:
        return schema.load(params, overrides or [])
    except Exception as err:  # Hydra/OmegaConf raise many kinds for a bad override
        fail(f"cannot load the configuration: {err}")


def run_stage(
    name: str, params_file: Path | None, overrides: list[str] | None, **kwargs: str
) -> None:
    """Load the config and run `emowatch.stages.<name>.main`; data errors exit 1 with a message."""
    from importlib import import_module

    from emowatch.errors import DataError, UnsafeModelError

    cfg = load(params_file, overrides)
    try:
        import_module(f"emowatch.stages.{name}").main(cfg, **kwargs)
    except (DataError, UnsafeModelError, FileNotFoundError, ValueError) as err:
        fail(str(err))
