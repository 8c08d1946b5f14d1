"""Deployment commands: `watch` (cameras, videos, streams, with the live page) and `site-model`
(which model this site runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emowatch import config
from emowatch.cli.common import OVERRIDE, Overrides, ParamsOpt, fail, load

PANEL = "Deployment"
deployment = typer.Typer()


@deployment.command()
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
    writes one file per camera). Cameras and streams are reopened with backoff for as long as
    it takes (camera_down / camera_up events; an alert when one stays down); files end.

    Prints one JSON line per event (track_started, emotion_changed, track_ended, alert,
    frame_error, camera_down, camera_up, camera_error) and a closing summary with frames/s and
    the webhook's delivered / spooled / dropped counts. Alert rules, sinks and the model are in
    conf/deploy (override with deploy.watch.alerts.k=2 and the like). Privacy: nothing is
    written to disk unless asked (--out, --log, deploy.watch.alerts.include_snapshot; with
    --serve, the alert log of alerts and acknowledgements, without images, kept
    deploy.watch.keep_days). --serve keeps only the frame being streamed. Credentials in a
    source URL are never printed.

    Exit status: 0 the sources ended or the watch was stopped (Ctrl-C, SIGTERM); 1 it could
    not start; 69 every live source was given up (only with deploy.watch.reconnect.max_attempts
    set): for a service manager to restart it.
    """
    from emowatch.deploy import redact
    from emowatch.deploy import watch as watcher
    from emowatch.deploy.server import ServeError, ServeOptions
    from emowatch.deploy.site_model import ModelError

    overrides = [a for a in sources if OVERRIDE.match(a)]
    sources = [a for a in sources if not OVERRIDE.match(a)]
    if not sources:
        fail("name at least one source (a camera index, a video, a stream URL, images)")
    cfg = load(params_file, overrides)
    if not serve and (host or port or token or expose):
        fail("--host, --port, --token and --expose go with --serve")
    options = ServeOptions(host, port, token, expose) if serve else None
    try:
        result = watcher.main(
            cfg,
            sources,
            model=model,
            threshold=threshold,
            out=out,
            show=show,
            log_file=log_file,
            webhook=webhook,
            root=config.find_root(),
            serve=options,
        )
    except (watcher.WatchError, ModelError, ServeError, FileNotFoundError, ValueError) as err:
        fail(redact.text(str(err)))
    raise typer.Exit(int(result.outcome))


@deployment.command("site-model")
def site_model_cmd(overrides: Overrides = None, params_file: ParamsOpt = None) -> None:
    """Print the model URI `watch` and `make serve` use when none is named (the reason and the
    alert rule it runs on stderr): with photos, the photos or FER2013 champion by their
    camera-path figures on this site's people; else the FER2013 champion."""
    from emowatch.deploy import alert_rule, site_model

    cfg, root = load(params_file, overrides), config.find_root()
    choice = site_model.choose(cfg, root)
    typer.echo(f"{choice.uri}: {choice.reason}", err=True)
    if choice.warning:
        typer.echo(choice.warning, err=True)
    rule, why = alert_rule.for_model(cfg, choice.uri, root)
    typer.echo(f"alert rule: {rule} — {why}", err=True)
    typer.echo(choice.uri)
