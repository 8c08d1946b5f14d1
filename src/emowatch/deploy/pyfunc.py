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
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import pandas as pd
import torch
from mlflow.entities.model_registry import ModelVersion

from emowatch.data.images import NOT_AN_IMAGE, load_gray
from emowatch.deploy.classifier import FaceClassifier, spec_of, to_gray
from emowatch.evaluation.loading import load_trained

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
    """Face detection + preprocessing + network + angry threshold, as one MLflow model."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        net, _ = load_trained(Path(context.artifacts["model_dir"]))
        self.classifier = FaceClassifier(net, dict(context.model_config))

    def predict(self, context, model_input, params=None):
        """Per-face rows for the input images (no type hints: MLflow would coerce the input)."""
        return predict_frame(self.classifier, model_input)


def log_model(model_dir: Path, spec: dict, name: str, metadata: dict) -> str:
    """Log a trained model folder (model.ckpt + model.json) as the pyfunc; returns its URI."""
    requirements = [
        f"torch=={torch.__version__.split('+')[0]}",
        f"mlflow=={mlflow.__version__}",
        f"opencv-python-headless=={version('opencv-python-headless')}",
        "pandas",
        "pillow",
        "omegaconf",
        "hydra-core",
    ]
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=EmotionModel(),
        artifacts={"model_dir": str(model_dir)},
        model_config=spec,
        pip_requirements=requirements,
        metadata=metadata,
    )
    return info.model_uri


def load_classifier(uri: str, fallback: dict | None = None) -> FaceClassifier:
    """The FaceClassifier inside a logged/registered emowatch pyfunc (e.g. models:/name@alias).

    A registry version holding a bare PyTorch network (registered before versions carried their
    detector and threshold) is wrapped from its version tags, with `fallback` giving the
    deployment settings (tta, crop_margin, detector) it lacks."""
    not_ours = ValueError(
        f"{uri} is not an emowatch face model: register it with `emowatch register` "
        "(dvc repro register)"
    )
    if is_bare_pytorch(uri):
        if fallback is None or not uri.startswith("models:/"):
            raise not_ours
        tags = version_of(uri).tags
        info = {
            "classes": json.loads(tags["classes"]),
            "input_shape": json.loads(tags["input_shape"]),
            "normalize": {
                "mean": float(tags["normalize_mean"]),
                "std": float(tags["normalize_std"]),
            },
        }
        spec = spec_of(info, threshold=float(tags["threshold_angry"]), **fallback)
        return FaceClassifier(mlflow.pytorch.load_model(uri).eval(), spec)
    inner = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    if not isinstance(inner, EmotionModel):
        raise not_ours
    return inner.classifier


def is_bare_pytorch(uri: str) -> bool:
    """Whether a logged model is a plain `mlflow.pytorch` network (read from its MLmodel file,
    without loading it)."""
    return "pytorch" in mlflow.models.get_model_info(uri).flavors


def version_of(uri: str) -> ModelVersion:
    """The registry version behind models:/name@alias or models:/name/version."""
    client = mlflow.MlflowClient()
    ref = uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    name, version = ref.rsplit("/", 1)
    return client.get_model_version(name, version)


def load_network(uri: str) -> torch.nn.Module:
    """The bare network of a registered version, an emowatch pyfunc or a plain PyTorch model
    (the versions registered before models carried their detector and threshold)."""
    if is_bare_pytorch(uri):
        return mlflow.pytorch.load_model(uri).eval()
    return load_classifier(uri).net
