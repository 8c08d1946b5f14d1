"""conf/ is the single source: params.yaml agrees with it, and every stage's params exist."""

from __future__ import annotations

from emowatch import config
from tests.conftest import REPO


def test_params_yaml_is_the_composition_of_conf():
    assert config.params_in_sync(REPO), (
        "params.yaml is out of sync with conf/: run `emowatch params`"
    )


def test_no_hydra_runtime_interpolations_in_conf():
    for path in (REPO / "conf").rglob("*.yaml"):
        code = [line.split("#")[0] for line in path.read_text().splitlines()]
        assert not any("${hydra:" in line for line in code), f"{path}: DVC composes without Hydra"


def test_overrides_and_params_file(tmp_path):
    cfg = config.compose(["data.fer2013.labels=ferplus", "paths.data_dir=/d"], root=REPO)
    assert cfg.data.fer2013.labels == "ferplus"
    assert cfg.data.fer2013.csv_path == "/d/fer2013/fer2013.csv.gz"  # interpolations resolved
    path = tmp_path / "p.yaml"
    path.write_text(config.to_yaml(cfg))
    loaded = config.load(path, ["seed=7"])
    assert loaded.seed == 7 and loaded.data.fer2013.labels == "ferplus"


def test_write_params_writes_what_check_expects(tmp_path):
    (tmp_path / "conf").symlink_to(REPO / "conf")
    assert not config.params_in_sync(tmp_path)
    config.write_params(tmp_path)
    assert config.params_in_sync(tmp_path)


def test_paths_resolve_against_root(tmp_path):
    assert config.resolve_path("a/b", tmp_path) == tmp_path / "a/b"
    assert config.resolve_path("/abs", tmp_path).as_posix() == "/abs"
    assert config.find_root(REPO / "src" / "emowatch") == REPO


def test_profiles_cpu_by_default_and_gpu_on_request():
    cpu = config.compose([])
    assert cpu.profile == "cpu" and cpu.trainer.accelerator == "cpu"
    assert cpu.trainer.precision == "bf16-mixed"
    gpu = config.compose(["profile=gpu"])
    assert gpu.profile == "gpu" and gpu.trainer.accelerator == "gpu"
    assert gpu.trainer.precision == "16-mixed"
    assert gpu.models.mobilenet_v2.net.resize > cpu.models.mobilenet_v2.net.resize
    assert gpu.models.vgg.max_epochs > cpu.models.vgg.max_epochs
    assert gpu.models.vgg.net.filters[-1] > cpu.models.vgg.net.filters[-1]


def test_bytecode_caches_do_not_change_a_stages_source_deps():
    """Stages depend on source folders (src/emowatch/training, ...); the `__pycache__` that any
    import writes there (the tests do) must not make `dvc status` call them changed, or the
    next `dvc repro` retrains everything."""
    from dvc.repo import Repo

    ignore = Repo(str(REPO)).dvcignore
    training = REPO / "src" / "emowatch" / "training"
    assert ignore.is_ignored_file(str(training / "__pycache__" / "fit.cpython-311.pyc"))
    assert ignore.is_ignored_file(str(training / "stray.pyc"))
    assert not ignore.is_ignored_file(str(training / "fit.py"))


def test_a_hand_edited_params_file_is_checked_against_conf(tmp_path):
    """conf/ is the schema of a params file: an unknown key or a value of another kind is
    refused at load with the key, the kind and the nearest keys; files composed with another
    option of a group (trainer=ddp, another net, the tiny profile) load."""
    import shutil

    import pytest

    from emowatch.cli.schema import load

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    path = tmp_path / "params.yaml"
    text = (REPO / "params.yaml").read_text()
    path.write_text(text)
    assert load(path, []).seed == 42
    path.write_text(text.replace("  target_recall: 0.8\n", "  target_recal: 0.8\n", 1))
    with pytest.raises(config.ConfigError, match=r"unknown key train.target_recal; did you mean"):
        load(path, [])
    path.write_text(text.replace("      k: 3\n", "      k: three\n", 1))
    with pytest.raises(
        config.ConfigError, match=r"deploy.watch.alerts.k: 'three' is a string, but .* an integer"
    ):
        load(path, [])
    path.write_text(text.replace("profile: cpu\n", "profile: huge\n"))
    with pytest.raises(config.ConfigError, match="profile='huge' is not a file of conf/profile/"):
        load(path, [])
    for options in (["trainer=ddp"], ["profile=tiny"], ["scheduler=cosine"]):
        path.write_text(config.to_yaml(config.compose(options, root=REPO)))
        load(path, [])  # no error: keys of another option of a group
