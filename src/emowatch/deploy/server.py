"""The live page of `emowatch watch --serve`: FastAPI served by uvicorn in a background thread.

Routes: `/` the page (static HTML/JS), `/stream.mjpg` the annotated video (MJPEG), `/api/state`
the cameras' status, faces and alert log, `POST /api/alerts/{id}/ack` an acknowledgement,
`POST /api/alerts/{id}/feedback` staff feedback ({"label": "angry" | "not_angry"}), `/healthz`,
and `/login` where a token is set.

Reachable only at its own address, by design (a page another website opens in a staff
member's browser must not reach it, DNS rebinding included):
- the Host header must name an allowed host (loopback names; with --expose also the bound
  address, the machine's names and `serve.allowed_hosts`), else 421 Misdirected Request;
- every request that changes state must come from the page's own origin (Origin checked),
  and acknowledgements and feedback need a JSON body (415 otherwise);
- with a token (required with --expose), every route but `/healthz` and `/login` needs it: in
  an HttpOnly, SameSite=Strict cookie that `/login` sets once the token is typed in (never in a
  URL), or an `Authorization: Bearer` header for scripts;
- a Content-Security-Policy allows only the page's own script and style, no framing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import os
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from omegaconf import DictConfig

from emowatch.config import resolve_path
from emowatch.deploy.alerts import Fanout, LogSink, Sink
from emowatch.deploy.feedback import FeedbackStore
from emowatch.deploy.live import AckError, LiveSink, LiveState
from emowatch.deploy.retention import DailyLog

COOKIE = "emowatch_token"
BOUNDARY = "emowatchframe"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")


class ServeError(Exception):
    """The page cannot be served as asked (address not allowed, no token, port taken)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def check_bind(host: str, expose: bool, token: str | None) -> None:
    """Loopback only, unless `expose` says otherwise; exposed only with a token."""
    if is_loopback(host):
        return
    if not expose:
        raise ServeError(
            f"--host {host} would expose the page (video of people, alerts) beyond this "
            "machine; add --expose to mean it, and set a token (EMOWATCH_TOKEN or --token)"
        )
    if not token:
        raise ServeError(
            f"--expose on {host} needs a token: anyone who can reach the page would see the "
            "video and acknowledge alerts. Set EMOWATCH_TOKEN (or --token)"
        )
    print(
        f"WARNING: the live page is bound to {host}, reachable from other machines", file=sys.stderr
    )


def allowed_hosts(host: str, expose: bool, extra: Iterable[str] = ()) -> set[str]:
    """The names the page answers to: loopback names; exposed, also the bound address (or, on
    every interface, this machine's names and addresses) and `extra`."""
    names = set(LOOPBACK_NAMES)
    if expose:
        names |= {h.lower() for h in extra}
        if not is_wildcard(host):
            names.add(host.lower())
        else:
            machine = {socket.gethostname(), socket.getfqdn()}
            for name in list(machine):
                with contextlib.suppress(OSError):
                    machine |= {a[4][0] for a in socket.getaddrinfo(name, None)}
            names |= {m.lower() for m in machine if m}
    return names


def host_of(value: str) -> str:
    """The host of a Host header ("127.0.0.1:8765", "[::1]:8765", "name") in lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def page_html(name: str = "live.html") -> str:
    return resources.files("emowatch.deploy").joinpath(f"static/{name}").read_text("utf-8")


def csp_for(html: str) -> str:
    """A Content-Security-Policy allowing exactly the page's inline script(s) and style(s)."""

    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        digest = [base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in bodies]
        return " ".join(f"'sha256-{d}'" for d in digest)

    return (
        f"default-src 'none'; script-src {hashes('script') or chr(39) + 'none' + chr(39)}; "
        f"style-src {hashes('style') or chr(39) + 'none' + chr(39)}; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def create_app(
    state: LiveState,
    on_ack: Callable[[dict[str, Any]], None],
    token: str | None = None,
    resend_s: float = 1.0,
    on_feedback: Callable[[str, str, str], dict[str, Any]] | None = None,
    hosts: Iterable[str] = LOOPBACK_NAMES,
) -> FastAPI:
    """The page's app over `state`; `on_ack` logs and forwards each acknowledgement,
    `on_feedback(alert_id, label, by)` takes staff feedback (default: `state.mark` only);
    it answers only to `hosts` (the Host header's name)."""
    app = FastAPI(title="emowatch live", docs_url=None, redoc_url=None, openapi_url=None)
    html, login_html = page_html(), page_html("login.html")
    policies = {"/": csp_for(html), "/login": csp_for(login_html)}
    hosts = {h.lower() for h in hosts}
    open_paths = ("/healthz", "/login")

    def authorised(request: Request) -> bool:
        if not token:
            return True
        given = request.cookies.get(COOKIE) or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:]
        return secrets.compare_digest(given.encode(), token.encode())

    def same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:  # not a browser (a browser sends Origin with every POST)
            return True
        parts = urlsplit(origin)
        own_port = request.url.port or (443 if request.url.scheme == "https" else 80)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return (parts.hostname or "").lower() in hosts and port == own_port

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if host_of(request.headers.get("host", "")) not in hosts:
            response: Response = JSONResponse(
                {"detail": "this page answers only at its own address"}, status_code=421
            )
        elif request.method in STATE_CHANGING and not same_origin(request):
            response = JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
        elif request.url.path not in open_paths and not authorised(request):
            if request.url.path == "/" and request.method == "GET":
                response = RedirectResponse("login", status_code=303)
            else:
                response = JSONResponse(
                    {"detail": "a token is needed: open /login and type it in"}, status_code=401
                )
        else:
            response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = (
            "same-origin"  # (no-referrer makes forms send Origin: null)
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = policies.get(
            request.url.path, "default-src 'none'; frame-ancestors 'none'"
        )
        return response

    async def json_body(request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "send a JSON body (Content-Type: application/json)")
        try:
            body = await request.json()
        except ValueError as err:
            raise HTTPException(400, "the body is not JSON") from err
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object")
        return body

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(html)

    @app.get("/login", response_class=HTMLResponse)
    def login_page() -> HTMLResponse:
        return HTMLResponse(login_html)

    @app.post("/login")
    async def login(request: Request) -> Response:
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        raw = (await request.body()).decode("utf-8", "replace")
        given = parse_qs(raw).get("token", [""])[0] if kind.endswith("urlencoded") else ""
        if not token or secrets.compare_digest(given.encode(), token.encode()):
            response = RedirectResponse(".", status_code=303)
            if token:
                response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response
        return RedirectResponse("login?wrong=1", status_code=303)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/state")
    def api_state() -> dict[str, Any]:
        return state.view()

    @app.post("/api/alerts/{alert_id}/ack")
    async def acknowledge(alert_id: str, request: Request) -> dict[str, Any]:
        body = await json_body(request)
        try:
            event = state.acknowledge(alert_id, str(body.get("by") or "staff"))
        except AckError as err:
            raise HTTPException(err.status, str(err)) from err
        on_ack(event)
        return event

    @app.post("/api/alerts/{alert_id}/feedback")
    async def feedback(alert_id: str, request: Request) -> dict[str, Any]:
        body = await json_body(request)
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
        keep_days: float = 30.0,
    ) -> None:
        host = options.host or scfg.host
        port = scfg.port if options.port is None else options.port
        token = options.token or (os.environ.get(scfg.token_env) if scfg.token_env else None)
        check_bind(host, options.expose, token)
        hosts = allowed_hosts(host, options.expose, scfg.get("allowed_hosts") or [])
        self.state = LiveState(scfg.stall_s, scfg.max_alerts, scfg.jpeg_quality, cameras)
        self.alert_log = DailyLog(resolve_path(scfg.alert_log, root), keep_days, fsync=True)
        expired = self.alert_log.expire()
        restored = self.state.restore(self.alert_log, scfg.max_alerts)
        alert_sinks.sinks += [LogSink(self.alert_log), LiveSink(self.state)]
        self.events, self.alert_sinks = events, alert_sinks
        self.feedback_store, self.camera = feedback_store, camera
        if feedback_store is not None:
            expired = feedback_store.expire()
            print(
                f"feedback: faces of marked alerts are kept in {feedback_store.folder} for "
                f"{feedback_store.keep_days:g} days ({len(expired)} expired ones deleted)",
                file=sys.stderr,
            )
        app = create_app(
            self.state, self.acknowledged, token, on_feedback=self.feedback, hosts=hosts
        )
        self.server = LiveServer(app, host, port)
        self.server.start()
        shown = self.server.url + ("login (the token is typed in there)" if token else "")
        print(
            f"live page: {shown}; answers to {', '.join(sorted(hosts))} "
            f"(deploy.watch.serve.allowed_hosts adds names). Alert log {self.alert_log.path} "
            f"(days kept: {keep_days:g}; {len(expired)} expired file(s) deleted), "
            f"{restored} earlier alert(s) listed",
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
