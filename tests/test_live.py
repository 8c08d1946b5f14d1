"""`emowatch watch --serve`: the live page's state, its HTTP API on a real server, and an
end-to-end run in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from emowatch.deploy.live import AckError, LiveState
from emowatch.deploy.retention import DailyLog
from emowatch.deploy.server import (
    LiveServer,
    ServeError,
    allowed_hosts,
    check_bind,
    create_app,
    page_html,
)
from emowatch.deploy.tracker import Track
from emowatch.inference.face_classifier import FacePrediction
from tests.test_serving import free_port
from tests.test_watch import trained, write_video  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def face(track_id: int, angry: bool) -> tuple[Track, FacePrediction]:
    p = 0.9 if angry else 0.1
    probs = {"angry": p, "happy": 1 - p}
    track = Track(id=track_id, box=(10, 10, 40, 40), first_frame=0, last_frame=0, n=1)
    pred = FacePrediction((10, 10, 40, 40), probs, "angry" if angry else "happy", angry, p)
    return track, pred


def alert(alert_id: str) -> dict:
    return {"event": "alert", "alert_id": alert_id, "time": "2026-11-25T10:00:00+00:00", "track": 1}


def test_state_keeps_one_frame_and_tells_live_stalled_ended():
    state = LiveState(stall_s=0.05)
    assert state.view()["source"]["status"] == "starting"
    t, p = face(1, angry=True)
    for _ in range(3):
        state.publish(np.zeros((60, 80, 3), np.uint8), [t], [p])
    view = state.view()
    assert view["source"] == {"status": "live", "detail": "", "frames": 3}
    assert view["faces"][0]["track"] == 1 and view["faces"][0]["angry"] is True
    seq, jpeg = state.next_frame(0, timeout=0.1)
    assert seq == 3 and jpeg[:2] == b"\xff\xd8"  # only the latest frame, as JPEG
    time.sleep(0.1)
    stalled = state.view()
    assert stalled["source"]["status"] == "stalled" and stalled["faces"] == []
    state.source_state("ended", "3 frames")
    assert state.view()["source"]["status"] == "ended"


def test_acknowledge_once_and_restore_from_the_log(tmp_path):
    state = LiveState()
    state.add_alert(alert("a1"))
    state.add_alert(alert("a2"))
    assert [a["alert_id"] for a in state.view()["alerts"]] == ["a2", "a1"]  # newest first
    event = state.acknowledge("a1", "Ana")
    assert event["event"] == "alert_acknowledged" and event["by"] == "Ana"
    with pytest.raises(AckError) as again:
        state.acknowledge("a1", "Ben")
    assert again.value.status == 409
    with pytest.raises(AckError) as unknown:
        state.acknowledge("nope", "Ana")
    assert unknown.value.status == 404
    assert state.view()["unacknowledged"] == 1

    log = DailyLog(tmp_path / "alerts.jsonl", keep_days=30)
    lines = [json.dumps(alert("a1")), json.dumps(alert("a2")), "{broken", json.dumps(event)]
    log.day_path(datetime.now(UTC).date()).write_text("\n".join(lines) + "\n")
    restored = LiveState()
    assert restored.restore(log, keep=10) == 2
    alerts = {a["alert_id"]: a for a in restored.view()["alerts"]}
    assert alerts["a1"]["acknowledged"]["by"] == "Ana" and alerts["a2"]["acknowledged"] is None


def test_binding_beyond_loopback_needs_expose_and_a_token(capsys):
    check_bind("127.0.0.1", expose=False, token=None)
    check_bind("::1", expose=False, token=None)
    with pytest.raises(ServeError, match="--expose"):
        check_bind("0.0.0.0", expose=False, token=None)
    with pytest.raises(ServeError, match="needs a token"):
        check_bind("0.0.0.0", expose=True, token=None)
    check_bind("0.0.0.0", expose=True, token="s3cret")
    assert "reachable from other machines" in capsys.readouterr().err
    assert allowed_hosts("127.0.0.1", expose=False) == {"localhost", "127.0.0.1", "::1"}
    exposed = allowed_hosts("192.0.2.7", expose=True, extra=["Desk.Shop.LAN"])
    assert {"192.0.2.7", "desk.shop.lan", "localhost"} <= exposed


def request(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


def raw(
    server: LiveServer,
    method: str,
    path: str,
    headers: dict | None = None,
    body: bytes | None = None,
) -> tuple[int, bytes, dict]:
    """A request exactly as given (Host, Origin and all), redirects not followed."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def test_api_with_a_token_on_a_real_server():
    state = LiveState()
    state.add_alert(alert("a1"))
    acks: list[dict] = []
    server = LiveServer(create_app(state, acks.append, token="s3cret"), "127.0.0.1", free_port())
    server.start()
    try:
        base = server.url
        assert request(base + "healthz")[0] == 200  # health needs no token
        assert request(base + "api/state")[0] == 401
        assert request(base + "api/state?token=s3cret")[0] == 401  # never in a URL
        status, _, headers = raw(server, "GET", "/")
        assert status == 303 and headers["location"] == "login"  # the page asks for it
        # The login form: a wrong token sets nothing, the right one an HttpOnly strict cookie.
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _, headers = raw(server, "POST", "/login", form, b"token=wrong")
        assert status == 303 and "set-cookie" not in headers
        status, _, headers = raw(server, "POST", "/login", form, b"token=s3cret")
        cookie = headers["set-cookie"].lower()
        assert status == 303 and "httponly" in cookie and "samesite=strict" in cookie
        cookie = {"Cookie": "emowatch_token=s3cret"}
        status, body, _ = request(base + "api/state", headers=cookie)
        assert status == 200 and json.loads(body)["unacknowledged"] == 1
        bearer = {"Authorization": "Bearer s3cret"}
        url = base + "api/alerts/a1/ack"
        assert request(url, "POST", {"by": "Ana"})[0] == 401
        status, body, _ = request(url, "POST", {"by": "Ana"}, bearer)
        assert status == 200 and json.loads(body)["alert_id"] == "a1"
        assert request(url, "POST", {"by": "Ana"}, bearer)[0] == 409
        assert request(base + "api/alerts/zz/ack", "POST", {}, bearer)[0] == 404
        assert [a["by"] for a in acks] == ["Ana"]  # logged and forwarded once
        state.publish(np.zeros((60, 80, 3), np.uint8), [], [])
        stream = urllib.request.Request(base + "stream.mjpg", headers=cookie)
        with urllib.request.urlopen(stream, timeout=5) as r:
            assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            part = r.read(200)
        assert b"Content-Type: image/jpeg" in part and b"\xff\xd8" in part
    finally:
        state.close()
        server.stop()
    assert not server.thread.is_alive()


def test_a_rebinding_page_is_refused():
    """What a page on another site would send, through DNS rebinding or a form: a foreign
    Host gets 421, a foreign Origin on a change 403, a non-JSON acknowledgement 415; nothing
    it sends reaches the state. The page's own requests pass."""
    state = LiveState()
    state.add_alert(alert("a1"))
    acks: list[dict] = []
    server = LiveServer(create_app(state, acks.append), "127.0.0.1", free_port())
    server.start()
    try:
        own = f"127.0.0.1:{server.port}"
        foreign = {"Host": f"attacker.example:{server.port}"}
        for method, path in (("GET", "/api/state"), ("GET", "/stream.mjpg"), ("GET", "/")):
            assert raw(server, method, path, foreign)[0] == 421, path
        ack = json.dumps({"by": "mallory"}).encode()
        as_json = {"Content-Type": "application/json"}
        status, _, _ = raw(server, "POST", "/api/alerts/a1/ack", foreign | as_json, ack)
        assert status == 421
        cross = {"Host": own, "Origin": "http://attacker.example"} | as_json
        assert raw(server, "POST", "/api/alerts/a1/ack", cross, ack)[0] == 403
        other_port = {"Host": own, "Origin": "http://127.0.0.1:1"} | as_json
        assert raw(server, "POST", "/api/alerts/a1/ack", other_port, ack)[0] == 403
        form = {"Host": own, "Content-Type": "text/plain"}  # what a cross-site form can send
        assert raw(server, "POST", "/api/alerts/a1/ack", form, ack)[0] == 415
        assert acks == [] and state.view()["unacknowledged"] == 1
        status, body, headers = raw(server, "GET", "/", {"Host": own})
        assert status == 200 and b"innerHTML" not in body
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        mine = {"Host": own, "Origin": f"http://{own}"} | as_json
        assert raw(server, "POST", "/api/alerts/a1/ack", mine, ack)[0] == 200
        assert raw(server, "GET", "/api/state", {"Host": f"localhost:{server.port}"})[0] == 200
    finally:
        state.close()
        server.stop()


def test_the_page_puts_no_data_into_markup():
    """No innerHTML anywhere in the page's script: every value goes in with textContent."""
    for name in ("live.html", "login.html"):
        assert "innerHTML" not in page_html(name), name


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_taken_port_is_a_clear_error():
    port = free_port()
    first = LiveServer(create_app(LiveState(), print), "127.0.0.1", port)
    first.start()
    try:
        with pytest.raises(ServeError, match="port taken"):
            LiveServer(create_app(LiveState(), print), "127.0.0.1", port).start()
    finally:
        first.server.should_exit = True
        first.stop()


def chromium_missing() -> str | None:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        return (
            "Debian's chromium and chromium-driver are not installed "
            "(apt-get install chromium chromium-driver)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make install)"
    return None


def headless_chromium(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,800",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def wait_for_port(url: str, proc: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"watch --serve exited early: {proc.communicate()}")
        try:
            urllib.request.urlopen(url + "healthz", timeout=1).read()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the live page did not come up")


def test_live_page_shows_alert_and_records_acknowledgement_in_chromium(trained, tmp_path):  # noqa: F811
    missing = chromium_missing()
    if missing:
        pytest.skip(missing)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    _, model_dir = trained
    video = write_video(tmp_path / "angry_customer.mp4", n=40)
    log = tmp_path / "reports" / "watch" / "alerts.jsonl"
    port = free_port()
    overrides = [
        f"paths.artifacts_dir={tmp_path / 'artifacts'}",
        f"paths.reports_dir={tmp_path / 'reports'}",
        f"tracking.db={tmp_path / 'mlflow.db'}",
        f"tracking.artifacts_dir={tmp_path / 'mlartifacts'}",
        "deploy.watch.feedback.save_faces=true",  # this site keeps marked faces for training
        f"deploy.watch.feedback.dir={tmp_path / 'pending'}",
    ]
    env = dict(os.environ, EMOWATCH_TOKEN="desk-42")
    cmd = [
        sys.executable, "-m", "emowatch.cli", "watch", str(video), "--serve",
        "--port", str(port), "--model", str(model_dir), "--threshold", "0.0", *overrides,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    driver = None
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_for_port(base, proc)
        driver = headless_chromium(tmp_path)
        driver.get(base)  # the page sends a browser without the cookie to its login form
        wait = WebDriverWait(driver, 60)
        wait.until(ec.presence_of_element_located((By.ID, "token"))).send_keys("desk-42")
        driver.find_element(By.CSS_SELECTOR, "form button").click()
        assert "desk-42" not in driver.current_url
        button = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#alerts button.ack")))
        assert "Angry customer" in driver.find_element(By.ID, "alerts").text
        time.sleep(0.5)  # let the next frame and faces poll land for the picture
        driver.save_screenshot(str(tmp_path / "live_alert.png"))
        shot = os.environ.get("EMOWATCH_SCREENSHOT")  # the README's picture: make screenshot
        if shot:
            shutil.copy(tmp_path / "live_alert.png", shot)
        driver.find_element(By.ID, "who").send_keys("Ana")
        button.click()
        done = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#alerts .ack-done")))
        assert "acknowledged by Ana" in done.text
        driver.find_element(By.CSS_SELECTOR, "#alerts button.mark-angry").click()
        said = wait.until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#alerts .feedback-done"))
        )
        assert "marked confirmed angry by Ana" in said.text
        wait.until(ec.text_to_be_present_in_element((By.ID, "source"), "ended"))
        assert "The source has ended" in driver.find_element(By.ID, "notice").text
        frame_ok = driver.execute_script(
            "const i = document.getElementById('stream'); return i.complete && i.naturalWidth;"
        )
        assert frame_ok == 640  # the annotated video reached the page
        driver.save_screenshot(str(tmp_path / "live_ended.png"))
    finally:
        if driver is not None:
            driver.quit()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    (day,) = [p for _, p in DailyLog(log, 30).files()]  # one file per day, kept 30 days
    logged = [json.loads(line) for line in day.read_text().splitlines()]
    kinds = [e["event"] for e in logged]
    assert kinds == ["alert", "alert_acknowledged", "alert_feedback"]
    assert logged[1]["alert_id"] == logged[0]["alert_id"] and logged[1]["by"] == "Ana"
    assert logged[2]["label"] == "angry" and logged[2]["face_saved"] is True
    # The marked face reaches data/photos/angry/ through review and import.
    alert_id = logged[0]["alert_id"]
    opts = ["-o", f"deploy.watch.feedback.dir={tmp_path / 'pending'}"]
    opts += ["-o", f"paths.data_dir={tmp_path / 'data'}"]
    for step in (["accept", alert_id, *opts], ["import", *opts[1::2]]):
        done = subprocess.run(
            [sys.executable, "-m", "emowatch.cli", "feedback", *step],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    imported = list((tmp_path / "data/photos/angry").glob(f"FB*.AN1.{alert_id}.png"))
    assert len(imported) == 1 and not any((tmp_path / "pending").iterdir())
    printed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(e["event"] == "alert_acknowledged" for e in printed)
    assert printed[-1]["event"] == "summary" and printed[-1]["alerts"] == 1
    assert (tmp_path / "live_alert.png").stat().st_size > 10_000


def test_page_reconnects_after_a_server_restart(tmp_path):
    missing = chromium_missing()
    if missing:
        pytest.skip(missing)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()

    def serve(state: LiveState) -> LiveServer:
        state.publish(np.full((48, 64, 3), 128, np.uint8), [], [])
        server = LiveServer(create_app(state, print), "127.0.0.1", port)
        server.start()
        return server

    first_state = LiveState()
    first = serve(first_state)
    driver = headless_chromium(tmp_path)
    try:
        driver.get(first.url)
        wait = WebDriverWait(driver, 20)
        wait.until(ec.text_to_be_present_in_element((By.ID, "conn"), "connected"))
        first_state.close()
        first.stop()  # the watcher restarts (a new process, a new state)
        wait.until(ec.text_to_be_present_in_element((By.ID, "conn"), "reconnecting"))
        state = LiveState()
        state.add_alert(alert("after-restart"))
        second = serve(state)
        try:
            wait.until(ec.text_to_be_present_in_element((By.ID, "conn"), "connected"))
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#alerts button.ack")))
            # The video was reopened on the new server: its frame is 64 px wide.
            wait.until(
                lambda d: (
                    d.execute_script("return document.getElementById('stream').naturalWidth") == 64
                )
            )
        finally:
            state.close()
            second.stop()
    finally:
        driver.quit()


def test_live_page_shows_every_camera_in_chromium(trained, tmp_path):  # noqa: F811
    missing = chromium_missing()
    if missing:
        pytest.skip(missing)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, model_dir = trained
    front = write_video(tmp_path / "front.mp4", n=30)
    back = write_video(tmp_path / "back.mp4", n=20)
    port = free_port()
    cmd = [
        sys.executable, "-m", "emowatch.cli", "watch", str(front), str(back), "--serve",
        "--port", str(port), "--model", str(model_dir), "--threshold", "0.0",
        f"paths.reports_dir={tmp_path / 'reports'}",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    driver = None
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_for_port(base, proc)
        driver = headless_chromium(tmp_path)
        driver.get(base)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cameras .tile")) == 2)
        names = [
            t.get_attribute("data-camera") for t in driver.find_elements(By.CSS_SELECTOR, ".tile")
        ]
        assert names == ["front", "back"]
        wait.until(lambda d: d.find_element(By.ID, "alerts").text.count("Angry customer at") >= 2)
        alerts = driver.find_element(By.ID, "alerts").text
        assert "Angry customer at front" in alerts and "Angry customer at back" in alerts
        badges = lambda d: [b.text for b in d.find_elements(By.CSS_SELECTOR, ".tile .badge")]  # noqa: E731
        wait.until(lambda d: badges(d) == ["ended", "ended"])  # each camera's own status
        script = "return [...document.querySelectorAll('.tile img')].map(i => i.naturalWidth);"
        # Both annotated videos reach the page: the last frame too, for a browser that connects
        # after a short video ended (waited for: the picture decodes after the badge changes).
        wait.until(lambda d: d.execute_script(script) == [640, 640])
        assert "0 of 2 cameras live" in driver.find_element(By.ID, "source").text
    finally:
        if driver is not None:
            driver.quit()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    printed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert {e["camera"] for e in printed if e["event"] == "alert"} == {"front", "back"}
