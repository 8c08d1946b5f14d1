"""The registered model as an MLflow pyfunc that takes images and returns per-face emotions.

Input: a DataFrame whose `image` column (or only column) holds encoded image files (JPEG, PNG,
...) as bytes or base64 text, or a numpy array (one grayscale/BGR image, or a batch). Output: a
DataFrame with one row per face: `image` (input row), `status` (ok, no_face, not_an_image,
unreadable), `face`, `box` [x, y, w, h], `emotion`, `angry` (at the model's threshold),
`p_angry`, `threshold_angry` and `probabilities` (per class). An image without a face gets one
row with status no_face. Serve it with
`mlflow models serve -m models:/emowatch-fer2013@champion --env-manager local`.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import tempfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch

from emowatch.data.images import NOT_AN_IMAGE, load_gray
from emowatch.errors import UnsafeModelError
from emowatch.inference import loading
from emowatch.inference.face_classifier import FaceClassifier, check_spec, to_gray

COLUMNS = [
    "image",
    "status",
    "face",
    "box",
    "emotion",
    "angry",
    "p_angry",
    "threshold_angry",
    "probabilities",
    "error",
]


def decode(model_input: Any) -> Iterator[tuple[np.ndarray | None, str, str | None]]:
    """(grayscale image or None, status, error) per input image."""
    if isinstance(model_input, pd.DataFrame):
        if model_input.shape[1] == 0:
            return
        column = "image" if "image" in model_input.columns else model_input.columns[0]
        values: Any = model_input[column].tolist()
    elif isinstance(model_input, np.ndarray):
        a = model_input
        single = a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))
        values = [a] if single else list(a)
    elif isinstance(model_input, (list, tuple)):
        values = list(model_input)
    else:
        values = [model_input]
    for value in values:
        yield decode_one(value)


def decode_one(value: Any) -> tuple[np.ndarray | None, str, str | None]:
    if isinstance(value, np.ndarray):
        try:
            return to_gray(value.astype(np.uint8, copy=False)), "ok", None
        except ValueError as err:
            return None, NOT_AN_IMAGE, str(err)
    if isinstance(value, str):
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as err:
            return None, NOT_AN_IMAGE, f"not base64: {err}"
    if not isinstance(value, (bytes, bytearray)):
        return None, NOT_AN_IMAGE, f"unsupported input type {type(value).__name__}"
    loaded = load_gray(io.BytesIO(value))
    return loaded.gray, loaded.status or "ok", loaded.error


def predict_frame(classifier: FaceClassifier, model_input: Any) -> pd.DataFrame:
    """Per-face rows for every input image (see the module docstring)."""
    rows: list[dict[str, Any]] = []
    base = {"threshold_angry": classifier.threshold}
    for i, (gray, status, error) in enumerate(decode(model_input)):
        if gray is None:
            rows.append({"image": i, "status": status, "error": error} | base)
            continue
        found = classifier(gray)
        if not found:
            rows.append({"image": i, "status": "no_face"} | base)
        for j, face in enumerate(found):
            rows.append({"image": i, "status": "ok", "face": j} | face.to_dict() | base)
    return pd.DataFrame(rows, columns=COLUMNS).astype(object).where(lambda d: d.notna(), None)


class EmotionModel(mlflow.pyfunc.PythonModel):
    """Face detection + preprocessing + network + angry threshold, as one MLflow model. Its
    artifacts are `weights` (a state dict, loaded with weights_only=True) and `network` (the
    JSON spec of an allow-listed emowatch network); the model config is the deployment spec."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.classifier = build_classifier(
            Path(context.artifacts["network"]),
            Path(context.artifacts["weights"]),
            dict(context.model_config),
        )

    def predict(self, context, model_input, params=None):
        """Per-face rows for the input images (no type hints: MLflow would coerce the input)."""
        return predict_frame(self.classifier, model_input)


MODEL_CODE = Path(__file__).with_name("model_code.py")
NETWORK_KEYS = ("net", "classes", "input_shape", "normalize")


def build_classifier(network: Path, weights: Path, spec: dict) -> FaceClassifier:
    """The face classifier of a logged model's files; its model config is checked first."""
    check_spec(spec, str(network.parent))
    net = loading.load_network(json.loads(network.read_text()), weights)
    return FaceClassifier(net, spec)


def log_model(model_dir: Path, spec: dict, name: str, metadata: dict) -> str:
    """Log a trained model folder (model.ckpt + model.json) as the face pyfunc, from code:
    nothing is pickled. Returns its URI."""
    requirements = [
        f"torch=={torch.__version__.split('+')[0]}",
        f"mlflow=={mlflow.__version__}",
        f"opencv-python-headless=={version('opencv-python-headless')}",
        "pandas",
        "pillow",
        "omegaconf",
        "hydra-core",
    ]
    info = json.loads((model_dir / "model.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        weights, network = Path(tmp) / "weights.pt", Path(tmp) / "network.json"
        torch.save(loading.load_weights(model_dir / "model.ckpt"), weights)
        network.write_text(json.dumps({k: info[k] for k in NETWORK_KEYS}, indent=1))
        logged = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(MODEL_CODE),
            artifacts={"weights": str(weights), "network": str(network)},
            model_config=spec,
            pip_requirements=requirements,
            metadata=metadata,
        )
    return logged.model_uri


def refuse_unsafe(uri: str) -> dict:
    """The pyfunc flavor of a logged model, read from its MLmodel file without loading it;
    refuses anything that is not an emowatch model from code (a pickled Python model, a pickled
    PyTorch network) with how to re-register it."""
    flavors = mlflow.models.get_model_info(uri).flavors
    conf = flavors.get("python_function", {})
    if "pytorch" in flavors or "python_model" in conf or not conf.get("model_code_path"):
        raise UnsafeModelError(
            f"{uri} is stored as a pickle (registered before emowatch models were logged from "
            "code); it is not loaded. Re-register it from its trained files: `dvc repro "
            "evaluate register` (or `emowatch register -d DATASET`), then `emowatch promote`."
        )
    if set(conf.get("artifacts", {})) != {"weights", "network"}:
        raise UnsafeModelError(f"{uri} is not an emowatch face model: {sorted(flavors)}")
    return conf


def load_classifier(uri: str) -> FaceClassifier:
    """The FaceClassifier of a logged/registered emowatch model (e.g. models:/name@alias),
    built by the installed emowatch code: nothing from the registry is unpickled or run. The
    registry's copy of the model code must be this package's `model_code.py`."""
    conf = refuse_unsafe(uri)
    local = Path(mlflow.artifacts.download_artifacts(uri))
    code = local / Path(conf["model_code_path"]).name
    if not code.is_file() or code.read_bytes() != MODEL_CODE.read_bytes():
        raise UnsafeModelError(
            f"{uri}: its model code is not emowatch's own model_code.py; refused"
        )
    artifacts = {k: local / v["path"] for k, v in conf["artifacts"].items()}
    return build_classifier(artifacts["network"], artifacts["weights"], dict(conf["config"]))


def load_network(uri: str) -> torch.nn.Module:
    """The bare network of a registered version, for re-scoring."""
    return load_classifier(uri).net
