"""The webhook on a real receiver: spooled on disk before it is posted, delivered in order once
the endpoint answers (across restarts too), redirects not followed, permanent 4xx not retried,
signed, bounded, and its URL never printed whole."""

from __future__ import annotations

import io
import json
import time

import pytest

from emowatch.deploy import webhook
from emowatch.deploy.webhook import WebhookError, WebhookSink
from tests.receiver import Receiver

SECRET = "shared-secret"


def alert(n: int) -> dict:
    return {"event": "alert", "kind": "angry", "alert_id": f"a{n:03d}", "track": n}


def sink(url: str, tmp_path, **kw) -> tuple[WebhookSink, io.StringIO]:
    log = io.StringIO()
    options = {"timeout_s": 2.0, "backoff_s": 0.05, "max_backoff_s": 0.2, "secret": SECRET}
    return WebhookSink(url, tmp_path / "spool", log=log, **(options | kw)), log


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_delivered_in_order_once_each_signed(tmp_path):
    receiver = Receiver(secret=SECRET)
    try:
        s, _ = sink(receiver.url, tmp_path)
        for n in range(5):
            s.send(alert(n))
        stats = s.close()
    finally:
        receiver.stop()
    assert stats == {"delivered": 5, "spooled": 0, "dropped": 0, "rejected": 0, "failed_posts": 0}
    got = receiver.delivered()
    assert [g["key"] for g in got] == [f"a{n:03d}" for n in range(5)]  # in order, once each
    assert all(g["signed"] for g in got)
    assert not webhook.verify("another secret", webhook.sign(SECRET, b"{}"), b"{}")
    assert not webhook.verify(SECRET, webhook.sign(SECRET, b"{}", now=time.time() - 3600), b"{}")


def test_a_redirect_is_a_failure_not_followed_and_the_alert_waits(tmp_path):
    receiver = Receiver(secret=SECRET)
    receiver.mode = "redirect"
    try:
        s, log = sink(receiver.url, tmp_path)
        s.send(alert(1))
        wait_for(lambda: len(receiver.got) >= 2)  # retried, still a POST each time
        assert all(g["method"] == "POST" and g["status"] == 302 for g in receiver.got)
        assert "redirect to https://elsewhere.example/*** (not followed)" in log.getvalue()
        receiver.mode = "ok"
        stats = s.close()
    finally:
        receiver.stop()
    assert stats["delivered"] == 1 and stats["spooled"] == 0
    assert [g["key"] for g in receiver.delivered()] == ["a001"]


def test_a_permanent_refusal_is_logged_once_and_kept_aside(tmp_path):
    receiver = Receiver(secret=SECRET)
    receiver.mode = 404
    try:
        s, log = sink(receiver.url, tmp_path)
        s.send(alert(1))
        wait_for(lambda: s.stats["rejected"] == 1)
        receiver.mode = 429  # too many requests: retried
        s.send(alert(2))
        wait_for(lambda: s.stats["failed_posts"] >= 2)
        receiver.mode = "ok"
        stats = s.close()
    finally:
        receiver.stop()
    assert [g["status"] for g in receiver.got if g["key"] == "a001"] == [404]  # not retried
    assert stats["rejected"] == 1 and stats["delivered"] == 1
    assert log.getvalue().count("HTTP 404") == 1
    (kept,) = (tmp_path / "spool" / "rejected.jsonl").read_text().splitlines()
    assert json.loads(kept)["event"]["alert_id"] == "a001"


def test_what_the_endpoint_missed_is_delivered_by_the_next_run(tmp_path):
    receiver = Receiver(secret=SECRET)
    receiver.stop()  # the endpoint is down
    first, log = sink(receiver.url, tmp_path)
    for n in range(3):
        first.send(alert(n))
    assert first.close(wait_s=0.5) == {
        "delivered": 0, "spooled": 3, "dropped": 0, "rejected": 0,
        "failed_posts": first.stats["failed_posts"],
    }  # fmt: skip
    assert "stay spooled" in log.getvalue()
    receiver.start()  # back, on the same port; a new watch starts
    try:
        second, log = sink(receiver.url, tmp_path)
        assert "3 event(s) left by an earlier run" in log.getvalue()
        second.send(alert(3))
        stats = second.close()
    finally:
        receiver.stop()
    assert stats["delivered"] == 4 and stats["spooled"] == 0
    assert [g["key"] for g in receiver.delivered()] == ["a000", "a001", "a002", "a003"]


def test_only_past_the_bound_is_anything_dropped(tmp_path):
    s, log = sink("http://127.0.0.1:9/down", tmp_path, max_spooled=2)
    for n in range(3):
        s.send(alert(n))
    stats = s.close(wait_s=0.2)
    assert stats["dropped"] == 1 and stats["spooled"] == 2
    assert "dropped the oldest" in log.getvalue()
    kept = [json.loads(line)["event"]["alert_id"] for line in
            (tmp_path / "spool" / "pending.jsonl").read_text().splitlines()]  # fmt: skip
    done = int((tmp_path / "spool" / "done").read_text())
    assert kept[done:] == ["a001", "a002"]  # the oldest went


def test_only_http_and_https_and_the_url_is_never_printed_whole(tmp_path):
    for bad in ("file:///etc/passwd", "ftp://host/x", "hooks.example.com/x"):
        with pytest.raises(WebhookError, match="http:// or https://"):
            sink(bad, tmp_path)
    s, log = sink("http://127.0.0.1:9/services/T0/s3cr3t-path", tmp_path)
    s.send(alert(1))
    s.close(wait_s=0.3)
    assert "s3cr3t-path" not in log.getvalue() and "http://127.0.0.1:9/***" in log.getvalue()
