"""The live page of `emowatch watch --serve`: FastAPI served by uvicorn in a background thread.

Routes: `/` the page (static HTML/JS), `/stream.mjpg` the annotated video (MJPEG), `/api/state`
the source status, faces and alert log, `POST /api/alerts/{id}/ack` an acknowledgement,
`POST /api/alerts/{id}/feedback` staff feedback ({"label": "angry" | "not_angry"}), `/healthz`.
With a token, every route but `/healthz` needs it: `?token=` (the page then sets a cookie), an
`Authorization: Bearer` header, or that cookie.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from omegaconf import DictConfig

from emowatch.config import resolve_path
from emowatch.deploy.alerts import Fanout, FileSink, Sink
from emowatch.deploy.feedback import FeedbackStore
from emowatch.deploy.live import AckError, LiveSink, LiveState

COOKIE = "emowatch_token"
BOUNDARY = "emowatchframe"


class ServeError(Exception):
    """The page cannot be served as asked (address not allowed, port taken)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, expose: bool, token: str | None) -> None:
    """Loopback only, unless `expose` says otherwise; then warn (louder without a token)."""
    if is_loopback(host):
        return
    if not expose:
        raise ServeError(
            f"--host {host} would expose the page (video of people, alerts) beyond this "
            "machine; add --expose to mean it, and set a token (EMOWATCH_TOKEN or --token)"
        )
    print(
        f"WARNING: the live page is bound to {host}, reachable from other machines", file=sys.stderr
    )
    if not token:
        print(
            "WARNING: no token: anyone who can reach it sees the video and can acknowledge "
            "alerts; set EMOWATCH_TOKEN or --token",
            file=sys.stderr,
        )


def page_html() -> str:
    return resources.files("emowatch.deploy").joinpath("static/live.html").read_text("utf-8")


def create_app(
    state: LiveState,
    on_ack: Callable[[dict[str, Any]], None],
    token: str | None = None,
    resend_s: float = 1.0,
    on_feedback: Callable[[str, str, str], dict[str, Any]] | None = None,
) -> FastAPI:
    """The page's app over `state`; `on_ack` logs and forwards each acknowledgement,
    `on_feedback(alert_id, label, by)` takes staff feedback (default: `state.mark` only)."""
    app = FastAPI(title="emowatch live", docs_url=None, redoc_url=None, openapi_url=None)
    html = page_html()

    def allowed(request: Request) -> bool:
        if not token:
            return True
        given = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:]
        return secrets.compare_digest(given.encode(), token.encode())

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Response:
        if request.url.path != "/healthz" and not allowed(request):
            return JSONResponse(
                {"detail": "a token is needed: open the page as /?token=..."}, status_code=401
            )
        response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        response = HTMLResponse(html)
        if token and request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/state")
    def api_state() -> dict[str, Any]:
        return state.view()

    @app.post("/api/alerts/{alert_id}/ack")
    def acknowledge(alert_id: str, body: dict[str, Any] = Body(default={})) -> dict[str, Any]:  # noqa: B008
        try:
            event = state.acknowledge(alert_id, str(body.get("by") or "staff"))
        except AckError as err:
            raise HTTPException(err.status, str(err)) from err
        on_ack(event)
        return event

    @app.post("/api/alerts/{alert_id}/feedback")
    def feedback(alert_id: str, body: dict[str, Any] = Body(default={})) -> dict[str, Any]:  # noqa: B008
        label, by = str(body.get("label") or ""), str(body.get("by") or "staff")
        try:
            if on_feedback is None:
                return state.mark(alert_id, label, by)[0]
            return on_feedback(alert_id, label, by)
        except AckError as err:
            raise HTTPException(err.status, str(err)) from err

    @app.get("/stream.mjpg")
    async def stream(camera: str | None = None) -> StreamingResponse:
        return StreamingResponse(
            mjpeg(state, resend_s, camera),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        )

    return app


async def mjpeg(
    state: LiveState, resend_s: float, camera: str | None = None
) -> AsyncIterator[bytes]:
    """Each new frame of a camera as one part; the last frame again every `resend_s` while
    none comes, so a stalled source keeps its picture and a closed connection is noticed."""
    seq = 0
    while not state.closed:
        seq, jpeg = await asyncio.to_thread(state.next_frame, seq, resend_s, camera)
        if jpeg is None:
            continue
        yield (
            (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            ).encode()
            + jpeg
            + b"\r\n"
        )


class LiveServer:
    """uvicorn in a daemon thread; `start` returns once it listens, `stop` shuts it down."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.host, self.port = host, port
        self.thread = threading.Thread(target=self.server.run, name="emowatch-live", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self, timeout_s: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                raise ServeError(f"cannot serve on {self.host}:{self.port} (port taken?)")
            if time.monotonic() > deadline:
                raise ServeError(f"the live page did not start on {self.host}:{self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


@dataclass
class ServeOptions:
    """`watch --serve` options from the command line (None: from deploy.watch.serve)."""

    host: str | None = None
    port: int | None = None
    token: str | None = None
    expose: bool = False


class LivePage:
    """The page beside a watch run: its state, the server, and where acknowledgements go
    (the events stream, and the alert sinks: the alert log file and the webhook)."""

    def __init__(
        self,
        scfg: DictConfig,
        options: ServeOptions,
        events: Sink,
        alert_sinks: Fanout,
        root: Path | None = None,
        feedback_store: FeedbackStore | None = None,
        camera: str = "camera",
        cameras: list[str] | None = None,
    ) -> None:
        host = options.host or scfg.host
        port = scfg.port if options.port is None else options.port
        token = options.token or (os.environ.get(scfg.token_env) if scfg.token_env else None)
        check_bind(host, options.expose, token)
        self.state = LiveState(scfg.stall_s, scfg.max_alerts, scfg.jpeg_quality, cameras)
        self.alert_log = resolve_path(scfg.alert_log, root)
        restored = self.state.restore(self.alert_log, scfg.max_alerts)
        alert_sinks.sinks += [FileSink(self.alert_log), LiveSink(self.state)]
        self.events, self.alert_sinks = events, alert_sinks
        self.feedback_store, self.camera = feedback_store, camera
        if feedback_store is not None:
            expired = feedback_store.expire()
            print(
                f"feedback: faces of marked alerts are kept in {feedback_store.folder} for "
                f"{feedback_store.keep_days:g} days ({len(expired)} expired ones deleted)",
                file=sys.stderr,
            )
        app = create_app(self.state, self.acknowledged, token, on_feedback=self.feedback)
        self.server = LiveServer(app, host, port)
        self.server.start()
        shown = self.server.url + ("?token=<token>" if token else "")
        print(
            f"live page: {shown} (alert log {self.alert_log}, {restored} earlier alert(s))",
            file=sys.stderr,
        )

    def acknowledged(self, event: dict[str, Any]) -> None:
        self.events.send(event)
        self.alert_sinks.send(event)

    def feedback(self, alert_id: str, label: str, by: str) -> dict[str, Any]:
        """Staff feedback on an alert: logged and sent like an acknowledgement; with a feedback
        store, the alert's face is kept for review (`emowatch feedback review`)."""
        event, alert, face = self.state.mark(alert_id, label, by)
        event["face_saved"] = False
        if self.feedback_store is not None and face is not None:
            camera = alert.get("camera") or self.camera
            self.feedback_store.save(alert, face, label, event["by"], camera)
            event["face_saved"] = True
        self.acknowledged(event)
        return event

    def wait(self) -> None:
        """Keep the page up after the source ended, until Ctrl-C or SIGTERM."""
        print(f"source ended; the page stays up at {self.server.url} until Ctrl-C", file=sys.stderr)
        while self.server.thread.is_alive():
            time.sleep(0.2)

    def stop(self) -> None:
        self.state.close()
        self.server.stop()
