"""Nothing executable crosses machines: a malicious pickle planted as a checkpoint, as a
registry artifact, or a model.json naming an arbitrary class is refused with a clear error, and
the code it carries never runs (its `__reduce__` would create a marker file)."""

from __future__ import annotations

import contextlib
import json
import pickle
from pathlib import Path

import mlflow
import pytest
import torch
from omegaconf import OmegaConf

from emowatch import config, targets
from emowatch.deploy import pyfunc
from emowatch.errors import UnsafeModelError
from emowatch.inference.face_classifier import spec_of
from emowatch.inference.loading import build_network, load_trained
from emowatch.layout import Layout
from emowatch.stages import train, tune
from tests.conftest import REPO

CNN = {
    "net": {"_target_": "emowatch.models.nets.ConvNet", "filters": [8, 16], "units": [16]},
    "classes": ["angry", "happy"],
    "input_shape": [1, 48, 48],
    "normalize": {"mean": 0.5, "std": 0.25},
}


class Payload:
    """Unpickling this creates `marker`: the stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.json").write_text(json.dumps(CNN))
    (model_dir / "model.ckpt").write_bytes(pickle.dumps({"state_dict": Payload(marker)}))
    with pytest.raises(UnsafeModelError, match="not a plain weights file"):
        load_trained(model_dir)
    torch.save({"state_dict": {"net.w": Payload(marker)}}, model_dir / "model.ckpt")
    with pytest.raises(UnsafeModelError, match="not a plain weights file"):
        load_trained(model_dir)
    assert not marker.exists()


@pytest.mark.parametrize(
    "net",
    [
        {"_target_": "os.system", "command": "touch pwned"},
        {"_target_": "emowatch.models.nets.ConvNet", "act": {"_target_": "os.system"}},
        {"filters": [8]},
    ],
    ids=["os.system", "nested target", "no target"],
)
def test_a_spec_may_only_name_emowatch_networks(net, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafeModelError, match=r"network .* emowatch builds only \["):
        build_network(CNN | {"net": net})
    assert not (tmp_path / "pwned").exists()
    assert build_network(CNN)(torch.zeros(2, 1, 48, 48)).shape == (2, 2)


def plant(model_dir: Path, net: dict) -> None:
    """A trained model's files whose model.json names `net`, as a remote could hand them over."""
    model_dir.mkdir(parents=True)
    (model_dir / "model.json").write_text(json.dumps(CNN | {"net": net}))
    torch.save({"state_dict": {}}, model_dir / "model.ckpt")


def test_a_planted_model_json_never_reaches_training_or_tuning(make_cfg, tmp_path, monkeypatch):
    """The photo models start from FER2013's model.json (pulled from the DVC remote by the
    retrain job): a foreign `_target_` there stops train and tune before anything is built."""
    monkeypatch.chdir(tmp_path)
    cfg = make_cfg()
    plant(
        Layout(cfg).model("fer2013", "cnn3").model_dir,
        {"_target_": "os.system", "command": "touch pwned"},
    )
    with pytest.raises(UnsafeModelError, match=r"refused to build the network \['os.system'\]"):
        train.model_config(cfg, "photos", "cnn3", None)
    with pytest.raises(UnsafeModelError, match=r"model\.json"):
        tune.study_base(cfg, "photos", None)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("role", "node"),
    [
        ("optimizer", {"_target_": "os.system", "command": "touch pwned"}),
        ("optimizer", {"_target_": "torch.optim.adam.os.system"}),
        ("scheduler", {"_target_": "builtins.exec", "source": "1"}),
        ("trainer", {"_target_": "subprocess.Popen", "args": ["touch", "pwned"]}),
        ("transform", {"_target_": "albumentations.Compose", "x": {"_target_": "os.remove"}}),
        ("network", {"_target_": "torch.nn.Linear"}),
    ],
)
def test_every_config_target_goes_through_the_allow_list(role, node, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafeModelError, match=f"refused to build the {role}"):
        targets.build(node, role)
    assert not (tmp_path / "pwned").exists()


def test_the_shipped_config_names_only_allowed_targets():
    """Every `_target_` the composed conf/ holds, with every model and option, is allowed."""
    cfg = config.compose([], root=REPO)
    roles = {"net": "network", "optimizer": "optimizer", "scheduler": "scheduler"}
    checked = 0
    for name in cfg.models:
        for key, role in roles.items():
            if cfg.models[name].get(key) is not None:
                targets.check(cfg.models[name][key], role)
                checked += 1
    for path in sorted((REPO / "conf/scheduler").glob("*.yaml")):
        targets.check(OmegaConf.load(path), "scheduler", path.name)
        checked += 1
    for path in sorted((REPO / "conf/trainer").glob("*.yaml")):
        targets.check(OmegaConf.load(path), "trainer", path.name)
        checked += 1
    for t in cfg.augment.transforms.values():
        if t is not None:
            targets.check(t, "transform")
            checked += 1
    assert checked >= 20


def spec(**extra) -> dict:
    detector = {"name": "haar", "cascade": "haarcascade_frontalface_default.xml", "min_size": 30}
    return spec_of(CNN, 0.4, "none", 0.2, detector) | extra


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"run": "os.system"}, r"unknown keys \['run'\]"),
        ({"detector": {"name": "haar", "cascade": "/etc/passwd"}}, "not a cascade file"),
        ({"detector": {"name": "haar", "cascade": "../../x.xml"}}, "not a cascade file"),
        ({"detector": {"name": "haar", "shell": "sh"}}, r"unknown detector settings \['shell'\]"),
        ({"detector": {"name": "yunet", "onnx": "/tmp/x"}}, r"detector settings \['onnx'\]"),
        ({"detector": {"name": "dlib"}}, r"unknown detector 'dlib'"),
        ({"finder": {"min_face": 48, "hook": 1}}, r"finder settings \['hook'\]"),
        ({"finder": {"min_face": "os.system"}}, r"finder settings \['min_face'\]"),
    ],
)
def test_a_registered_model_config_is_checked(registry, bad, match):
    """The registry's model config is validated before the served model is built."""
    model_dir = registry / "model"
    model_dir.mkdir()
    (model_dir / "model.json").write_text(json.dumps(CNN))
    torch.save(build_network(CNN).state_dict(), model_dir / "model.ckpt")
    with mlflow.start_run():
        good = pyfunc.log_model(model_dir, spec(), "good", {})
        evil = pyfunc.log_model(model_dir, spec(**bad), "evil", {})
    assert pyfunc.load_classifier(good).threshold == 0.4
    with pytest.raises(UnsafeModelError, match=match):
        pyfunc.load_classifier(evil)


class Evil(mlflow.pyfunc.PythonModel):
    """A pickled Python model whose unpickling creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))

    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture
def registry(tmp_path, mlflow_template, monkeypatch):
    import shutil

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(mlflow_template, tmp_path / "m.db")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    mlflow.set_experiment("no-pickles")
    return tmp_path


def register(uri: str) -> str:
    version = mlflow.register_model(uri, "emowatch-evil")
    return f"models:/emowatch-evil/{version.version}"


def test_a_pickled_registry_version_is_refused_with_how_to_re_register(registry):
    marker = registry / "pwned"
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="m", python_model=Evil(marker))
    marker.unlink(missing_ok=True)  # whatever logging did, loading must not run it again
    uri = register(logged.model_uri)
    with pytest.raises(UnsafeModelError, match=r"stored as a pickle.*dvc repro evaluate register"):
        pyfunc.load_classifier(uri)
    with pytest.raises(UnsafeModelError):
        pyfunc.load_network(uri)
    assert not marker.exists()


def test_a_version_whose_model_code_is_not_ours_is_refused(registry):
    marker = registry / "pwned"
    code = registry / "model_code.py"
    code.write_text(
        "import pathlib, mlflow\n"
        f"pathlib.Path({str(marker)!r}).touch()\n"
        "from emowatch.deploy.pyfunc import EmotionModel\n"
        "mlflow.models.set_model(EmotionModel())\n"
    )
    weights, network = registry / "weights.pt", registry / "network.json"
    torch.save(build_network(CNN).state_dict(), weights)
    network.write_text(json.dumps(CNN))
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(
            name="m",
            python_model=str(code),
            artifacts={"weights": str(weights), "network": str(network)},
            model_config={"threshold_angry": 0.3},
        )
    marker.unlink(missing_ok=True)
    with pytest.raises(UnsafeModelError, match=r"not emowatch.s own model_code\.py"):
        pyfunc.load_classifier(register(logged.model_uri))
    assert not marker.exists()


def test_the_planted_payloads_are_real(registry):
    """The payloads above do run when a naive loader unpickles them: the refusals matter."""
    marker = registry / "pwned"
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="m", python_model=Evil(marker))
    marker.unlink(missing_ok=True)
    with contextlib.suppress(Exception):  # the payload replaced the model: MLflow may fail
        mlflow.pyfunc.load_model(logged.model_uri)
    assert marker.exists()


def test_align_is_in_the_spec_only_when_enabled_and_checked():
    from emowatch import config
    from emowatch.inference.face_classifier import align_of, check_spec

    off = config.compose(["deploy.align.enabled=false"])
    assert align_of(off.deploy.align) is None and "align" not in spec()
    on = align_of(config.compose([]).deploy.align)  # on by default
    assert on == {"eye_distance": 0.375, "eye_y": 0.378, "eye_x": 0.49}
    check_spec(spec(align=on), "test")
    for bad, match in (
        ({"eye_distance": 0.4, "eye_y": 0.4, "hook": 1}, r"align settings \['hook'\]"),
        ({"eye_distance": "x", "eye_y": 0.4}, r"align settings \['eye_distance'\]"),
        ({"eye_x": 0.5}, r"align settings \['eye_distance', 'eye_y'\]"),
    ):
        with pytest.raises(UnsafeModelError, match=match):
            check_spec(spec(align=bad), "test")
