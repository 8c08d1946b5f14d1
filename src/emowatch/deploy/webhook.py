"""Alerts to an HTTP endpoint: none lost, none sent twice, none counted wrongly.

Every event handed to the sink is first appended to an on-disk spool (JSON lines, flushed and
fsynced) and only then posted, in order, by a background thread; the video loop never waits for
the network. A delivered event leaves the spool; one that cannot be delivered stays, and is
retried with capped exponential backoff until the endpoint answers, across restarts too (the
next watch delivers what an earlier one left). Only past `max_spooled` waiting events is
anything dropped (the oldest), counted and logged.

What counts as delivered: a 2xx answer. A 3xx is not followed (urllib would re-send the POST
as a GET without its body): it is a failure that names the Location, retried like a 5xx, a
timeout or a refused connection, or 408/429. Any other 4xx is permanent: logged once, not
retried, and the event is kept in `rejected.jsonl` beside the spool for a person to look at.

Each POST carries `Idempotency-Key` (an alert's `alert_id`, else an id of its own; the same on
every retry, so a receiver drops a repeat) and, with a secret, `Emowatch-Signature:
t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>`, the scheme Stripe uses (GitHub's is the
same without the timestamp); `verify` checks one. Only http and https URLs are accepted, and
the URL is never printed whole (`redact.endpoint`).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import random
import ssl
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from emowatch.deploy import redact

SIGNATURE_HEADER = "Emowatch-Signature"
KEY_HEADER = "Idempotency-Key"
RETRYABLE_4XX = (408, 429)


class WebhookError(ValueError):
    """A webhook that cannot be used as configured (not http/https)."""


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f"{parts.scheme}://" if parts.scheme else repr(redact.endpoint(url))
        raise WebhookError(f"the webhook must be an http:// or https:// URL, not {shown}")
    return url


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    """The signature header's value for `body`."""
    t = int(time.time() if now is None else now)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = 300.0) -> bool:
    """A receiver's check: the signature is ours and at most `tolerance_s` old."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, fields.get("v1", ""))


@dataclass
class Answer:
    """What a POST came to: delivered, retry later, or rejected for good."""

    outcome: str  # "delivered" | "retry" | "rejected"
    detail: str


def classify(status: int, location: str | None) -> Answer:
    if 200 <= status < 300:
        return Answer("delivered", str(status))
    if 300 <= status < 400:
        where = redact.endpoint(location) if location and "://" in location else location
        return Answer("retry", f"HTTP {status}: a redirect to {where or '?'} (not followed)")
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        return Answer("rejected", f"HTTP {status}: the endpoint refuses this event")
    return Answer("retry", f"HTTP {status}")


class Spool:
    """Events waiting for delivery, on disk, in order: `pending.jsonl` holds one record per
    line ({"seq", "key", "event"}), `done` the seq of the last one delivered or dropped. A
    record is written (flushed, fsynced) before `add` returns; the file is compacted once
    everything in it is done."""

    def __init__(self, folder: Path, max_spooled: int) -> None:
        self.folder, self.max_spooled = folder, max_spooled
        folder.mkdir(parents=True, exist_ok=True)
        self.path, self.done_path = folder / "pending.jsonl", folder / "done"
        self.lock = threading.Lock()
        done = int(self.done_path.read_text() or 0) if self.done_path.is_file() else 0
        self.pending: deque[dict[str, Any]] = deque()
        self.unreadable = 0
        last = done
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash mid-write
                    self.unreadable += 1
                    continue
                last = max(last, int(record["seq"]))
                if record["seq"] > done:
                    self.pending.append(record)
        self.next_seq, self.done = last + 1, done
        self.file = self.path.open("a", encoding="utf-8")

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, event: dict[str, Any], key: str) -> dict[str, Any] | None:
        """Spool an event; returns the oldest waiting record when the bound dropped it."""
        with self.lock:
            record = {"seq": self.next_seq, "key": key, "event": event}
            self.next_seq += 1
            self.file.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
            self.file.flush()
            os.fsync(self.file.fileno())
            self.pending.append(record)
            if len(self.pending) > self.max_spooled:
                dropped = self.pending.popleft()
                self._mark(dropped["seq"])
                return dropped
            return None

    def head(self) -> dict[str, Any] | None:
        with self.lock:
            return self.pending[0] if self.pending else None

    def pop(self, record: dict[str, Any]) -> None:
        """The head was delivered (or rejected): it leaves the spool."""
        with self.lock:
            if self.pending and self.pending[0]["seq"] == record["seq"]:
                self.pending.popleft()
                self._mark(record["seq"])

    def _mark(self, seq: int) -> None:
        self.done = max(self.done, seq)
        tmp = self.done_path.with_suffix(".tmp")
        tmp.write_text(str(self.done))
        os.replace(tmp, self.done_path)
        if not self.pending:  # everything in the file is done: start it afresh
            self.file.close()
            self.path.write_text("")
            self.file = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        with self.lock:
            self.file.close()


class WebhookSink:
    """Spool every event, POST them in order from a background thread (see the module)."""

    def __init__(
        self,
        url: str,
        spool_dir: Path,
        timeout_s: float = 5.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        max_spooled: int = 10_000,
        secret: str | None = None,
        log: TextIO | None = None,
    ) -> None:
        self.url, self.shown = check_url(url), redact.endpoint(url)
        self.timeout_s, self.backoff_s, self.max_backoff_s = timeout_s, backoff_s, max_backoff_s
        self.secret, self.log = secret, log or sys.stderr
        self.spool = Spool(spool_dir, max_spooled)
        self.stats = {"delivered": 0, "dropped": 0, "rejected": 0, "failed_posts": 0}
        self.carried_over = len(self.spool)
        if self.carried_over:
            self.say(f"{self.carried_over} event(s) left by an earlier run will be delivered first")
        if self.spool.unreadable:
            self.say(f"{self.spool.unreadable} unreadable spool line(s) skipped")
        self.wake = threading.Event()
        self._stop = threading.Event()
        self.rng = random.Random()
        self.thread = threading.Thread(target=self._run, name="emowatch-webhook", daemon=True)
        self.thread.start()

    def say(self, message: str) -> None:
        print(f"webhook {self.shown}: {message}", file=self.log, flush=True)

    def send(self, event: dict[str, Any]) -> None:
        key = str(event["alert_id"]) if event.get("event") == "alert" else uuid.uuid4().hex
        dropped = self.spool.add(event, key)
        if dropped is not None:
            self.stats["dropped"] += 1
            self.say(
                f"spool full ({self.spool.max_spooled} waiting): dropped the oldest, a "
                f"{dropped['event'].get('event')} of {dropped['event'].get('time')}"
            )
        self.wake.set()

    def post(self, body: bytes, key: str) -> Answer:
        parts = urlsplit(self.url)
        host, port, timeout = parts.hostname, parts.port, self.timeout_s
        if parts.scheme == "https":
            context = ssl.create_default_context()
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Content-Type": "application/json", KEY_HEADER: key}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return classify(response.status, response.getheader("Location"))
        except (OSError, http.client.HTTPException) as err:
            return Answer("retry", redact.text(f"{type(err).__name__}: {err}"))
        finally:
            conn.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            record = self.spool.head()
            if record is None:
                self.wake.wait(0.5)
                self.wake.clear()
                continue
            body = json.dumps(record["event"], separators=(",", ":"), default=str).encode()
            answer = self.post(body, record["key"])
            if answer.outcome == "delivered":
                self.spool.pop(record)
                self.stats["delivered"] += 1
                if failures:
                    self.say(f"delivering again after {failures} failed post(s)")
                failures = 0
            elif answer.outcome == "rejected":
                self.reject(record, answer.detail)
                failures = 0
            else:
                self.stats["failed_posts"] += 1
                failures += 1
                if failures == 1:
                    self.say(f"{answer.detail}; {len(self.spool)} event(s) kept, retrying")
                wait = min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1))
                self._stop.wait(wait * (1 + 0.2 * self.rng.uniform(-1, 1)))

    def reject(self, record: dict[str, Any], detail: str) -> None:
        """A permanent refusal: logged once, kept in rejected.jsonl, not retried."""
        with (self.spool.folder / "rejected.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(record | {"answer": detail}, default=str) + "\n")
        self.spool.pop(record)
        self.stats["rejected"] += 1
        self.say(f"{detail}; the {record['event'].get('event')} is kept in rejected.jsonl")

    def close(self, wait_s: float = 5.0) -> dict[str, int]:
        """Deliver what waits (for at most `wait_s`), then stop; what is left stays spooled
        for the next run. Returns the counts."""
        deadline = time.monotonic() + wait_s
        while len(self.spool) and time.monotonic() < deadline and self.thread.is_alive():
            self.wake.set()
            time.sleep(0.05)
        self._stop.set()
        self.wake.set()
        self.thread.join(timeout=max(0.1, deadline - time.monotonic()) + self.timeout_s)
        self.spool.close()
        spooled = len(self.spool)
        if spooled:
            self.say(f"{spooled} event(s) not delivered yet stay spooled for the next run")
        return {
            "delivered": self.stats["delivered"],
            "spooled": spooled,
            "dropped": self.stats["dropped"],
            "rejected": self.stats["rejected"],
            "failed_posts": self.stats["failed_posts"],
        }
