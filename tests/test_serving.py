"""The registered model as an MLflow pyfunc on image bytes, and `mlflow models serve`."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from emowatch.deploy import pyfunc
from emowatch.inference.face_classifier import spec_of
from emowatch.layout import Layout
from emowatch.stages import train
from tests.test_watch import face_frame


def jpeg_b64(image: np.ndarray) -> str:
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


@pytest.fixture
def logged(tiny_fer, tmp_path, tracking_uri):
    """A tiny trained model logged as the face pyfunc and registered as champion."""
    cfg = tiny_fer()
    train.main(cfg, "fer2013", "cnn1")
    model_dir = Layout(cfg).model("fer2013", "cnn1").model_dir
    info = json.loads((model_dir / "model.json").read_text())
    spec = spec_of(info, threshold=0.3, tta="hflip", margin=0.2, detector=cfg.detector)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("serving-test")
    with mlflow.start_run():
        uri = pyfunc.log_model(model_dir, spec, "face-model", {"model": "cnn1"})
    version = mlflow.register_model(uri, "emowatch-test")
    mlflow.MlflowClient().set_registered_model_alias("emowatch-test", "champion", version.version)
    return "models:/emowatch-test@champion"


def test_pyfunc_answers_per_face_and_per_bad_input(logged):
    model = mlflow.pyfunc.load_model(logged)
    blank = np.full((240, 320), 128, np.uint8)
    frame = face_frame()
    raw = cv2.imencode(".png", frame)[1].tobytes()
    images = pd.DataFrame({"image": [jpeg_b64(frame), jpeg_b64(blank), "not base64!", raw]})
    out = model.predict(images)
    assert list(out["status"]) == ["ok", "no_face", "not_an_image", "ok"]
    face = out.iloc[0]
    assert face["image"] == 0 and face["face"] == 0 and len(face["box"]) == 4
    probs = face["probabilities"]
    assert set(probs) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert sum(probs.values()) == pytest.approx(1, abs=1e-3)
    assert face["angry"] == (face["p_angry"] >= 0.3) and face["threshold_angry"] == 0.3
    # An array works as well: one BGR image.
    assert list(model.predict(frame)["status"]) == ["ok"]
    # The network comes back out for re-scoring.
    assert pyfunc.load_network(logged)(torch.zeros(2, 1, 48, 48)).shape == (2, 7)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_answers_with_per_face_emotions(logged, tracking_uri):
    port = free_port()
    # `mlflow models serve` execs the venv's uvicorn: put the venv first on PATH
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin), "models", "serve", "-m", logged, "--env-manager", "local"]
    server = subprocess.Popen(
        [*cmd, "-p", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    out = server.stdout.read().decode() if server.stdout else ""
                    pytest.fail(f"server did not start:\n{out[-3000:]}")
                time.sleep(0.5)
        body = json.dumps({"dataframe_records": [{"image": jpeg_b64(face_frame())}]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        (face,) = answer["predictions"]
        assert face["status"] == "ok" and len(face["box"]) == 4
        assert face["emotion"] in face["probabilities"] and isinstance(face["angry"], bool)
    finally:
        server.terminate()
        server.wait(timeout=30)
