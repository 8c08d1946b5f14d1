"""Compose and load the Hydra configuration; resolve project paths.

`conf/` is the single source of parameters. `params.yaml` is the composed config, written the
way DVC's Hydra integration writes it, so `emowatch params` and `dvc exp run -S ...` agree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_NAME = "config"
PARAMS_FILE = "params.yaml"


class ConfigError(RuntimeError):
    """The configuration cannot be found or is inconsistent."""


def find_root(start: Path | None = None) -> Path:
    """The project root: $EMOWATCH_ROOT, else the nearest folder up holding conf/config.yaml."""
    env = os.environ.get("EMOWATCH_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "conf" / f"{CONFIG_NAME}.yaml").is_file():
            return folder
    raise ConfigError(
        f"No conf/{CONFIG_NAME}.yaml in {here} or above: run emowatch from the project "
        "checkout or set EMOWATCH_ROOT."
    )


def compose(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """Compose conf/ with Hydra overrides (e.g. `data.fer2013.labels=ferplus`), resolved."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    conf_dir = (root or find_root()) / "conf"
    # version_base=None and OmegaConf.resolve: exactly what DVC does in compose_and_dump.
    with initialize_config_dir(str(conf_dir), version_base=None):
        cfg = hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def load(params: Path | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """Load a composed params file (as DVC stages do), or compose conf/ when none is given.

    With a params file, overrides are plain `key=value` dotlist entries.
    """
    if params is None:
        return compose(overrides)
    if not params.is_file():
        raise ConfigError(f"Params file {params} not found: run `emowatch params` to write it.")
    cfg = OmegaConf.load(params)
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    assert isinstance(cfg, DictConfig)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """Serialise a composed config the way params.yaml is written."""
    return OmegaConf.to_yaml(cfg)


def render_params(root: Path | None = None) -> str:
    """The text params.yaml must hold for the current conf/."""
    return to_yaml(compose(root=root))


def write_params(root: Path | None = None) -> Path:
    """(Re)write params.yaml from conf/ and return its path."""
    root = root or find_root()
    path = root / PARAMS_FILE
    path.write_text(render_params(root), encoding="utf-8")
    return path


def params_in_sync(root: Path | None = None) -> bool:
    """True when params.yaml is exactly the composition of conf/."""
    root = root or find_root()
    path = root / PARAMS_FILE
    return path.is_file() and path.read_text(encoding="utf-8") == render_params(root)


def resolve_path(path: str | os.PathLike[str], root: Path | None = None) -> Path:
    """A config path: absolute paths as given, relative ones against the project root."""
    p = Path(path)
    return p if p.is_absolute() else (root or find_root()) / p


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, object]:
    """Flatten a nested config to dotted keys (for MLflow params)."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    out: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out
