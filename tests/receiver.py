"""A real HTTP receiver on 127.0.0.1 for webhook tests: it can answer 2xx, redirect, refuse
with a status, or be down (its socket closed), and it records what it got."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from emowatch.deploy import webhook


class Receiver:
    """`mode`: "ok" (204), "redirect" (302 to another host), or an HTTP status to answer."""

    def __init__(self, port: int = 0, secret: str | None = None) -> None:
        self.port, self.secret = port, secret
        self.mode: str | int = "ok"
        self.got: list[dict] = []  # every request: key, valid signature, body, answer
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/alerts"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                mode = receiver.mode
                signature = self.headers.get(webhook.SIGNATURE_HEADER, "")
                valid = bool(receiver.secret) and webhook.verify(receiver.secret, signature, body)
                status = 204 if mode == "ok" else 302 if mode == "redirect" else int(mode)
                with receiver.lock:
                    receiver.got.append(
                        {
                            "key": self.headers.get(webhook.KEY_HEADER),
                            "signed": valid,
                            "event": json.loads(body),
                            "status": status,
                            "method": self.command,
                        }
                    )
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "https://elsewhere.example/new-hook")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # a followed redirect would arrive here as a GET
                receiver.got.append({"method": "GET", "key": None, "event": None})
                self.send_response(405)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down: the port refuses connections."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def delivered(self) -> list[dict]:
        """What was accepted (2xx), in arrival order."""
        with self.lock:
            return [g for g in self.got if 200 <= g.get("status", 0) < 300]
