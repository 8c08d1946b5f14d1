"""`emowatch <command>`: one console script, its commands in sub-apps by area (pipeline stages,
deployment, operations, registry), shown in those groups by `emowatch --help`.

Stage commands take Hydra overrides (`emowatch prepare data.fer2013.labels=ferplus`) composed
over conf/, or `--params params.yaml` to run on the composed file exactly as `dvc repro` does.
"""

from __future__ import annotations

import typer

from emowatch import warning_filters
from emowatch.cli import deployment, operations, pipeline, registry

warning_filters.quiet()  # dependencies' known warnings and tips, by message and module

app = typer.Typer(
    help="emowatch: train, track, promote and deploy facial-expression models that catch "
    "angry customers. Run the whole pipeline with `dvc repro`; each stage is also a command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for area, sub in (
    (pipeline, pipeline.pipeline),
    (deployment, deployment.deployment),
    (operations, operations.operations),
    (registry, registry.registry),
):
    for command in [*sub.registered_commands, *sub.registered_groups]:
        command.rich_help_panel = area.PANEL  # `emowatch --help` lists the commands by area
    app.add_typer(sub)


def main() -> None:  # pragma: no cover - console entry point
    app()
