"""Compose and load the Hydra configuration; resolve project paths.

`conf/` is the single source of parameters. `params.yaml` is the composed config, written the
way DVC's Hydra integration writes it, so `emowatch params` and `dvc exp run -S ...` agree.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

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


def _leaves(node: object, prefix: str = "") -> dict[str, object]:
    """{dotted key: value} of a plain container's leaves (a list counts as one leaf)."""
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for k, v in node.items():
            out |= _leaves(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: node}


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, list | ListConfig):
        return "a list"
    if isinstance(value, dict | DictConfig):
        return "a mapping"
    return "a string"


def _fits(new: object, old: object) -> bool:
    """Whether `new` may replace `old`: null either way, an integer for a number, any scalar
    for a string (trainer.devices: auto or 2), otherwise the same kind."""
    if new is None or old is None:
        return True
    kind, was = _kind(new), _kind(old)
    if was == "a string":
        return kind not in ("a list", "a mapping")
    return kind == was or (was == "a number" and kind == "an integer")


def check_overrides(base: DictConfig, overrides: Sequence[str]) -> None:
    """Refuse (ConfigError) a `key=value` override whose key the configuration lacks or whose
    value is not of the kind the key holds; the message names the key, the expected kind and
    the nearest keys."""
    dotted = [o for o in overrides if not o.startswith(("+", "~"))]
    if not dotted:
        return
    known = _leaves(OmegaConf.to_container(base, resolve=False))
    for key, value in _leaves(OmegaConf.to_container(OmegaConf.from_dotlist(dotted))).items():
        old = OmegaConf.select(base, key, default=_ABSENT)
        if old is _ABSENT and _switched_on(base, key):
            continue
        if old is _ABSENT:
            near = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ConfigError(f"unknown key {key} in the overrides{hint}")
        if not _fits(value, old):
            raise ConfigError(
                f"{key}={value!r}: {key} holds {_kind(old)} (now {old!r}), not {_kind(value)}"
            )


_ABSENT = object()


def _switched_on(base: DictConfig, key: str) -> bool:
    """Whether an ancestor of `key` is null: an option that is off (`models.vgg.swa: null`),
    which an override such as `models.vgg.swa.lr=0.01` turns on with settings of its own."""
    parts = key.split(".")
    return any(
        OmegaConf.select(base, ".".join(parts[:i]), default=_ABSENT) is None
        for i in range(1, len(parts))
    )


def compose(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """Compose conf/ with Hydra overrides (e.g. `data.fer2013.labels=ferplus`), resolved; a
    `key=value` override must fit the key's kind (`check_overrides`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    conf_dir = (root or find_root()) / "conf"
    # version_base=None and OmegaConf.resolve: exactly what DVC does in compose_and_dump.
    with initialize_config_dir(str(conf_dir), version_base=None):
        cfg = hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))
        groups = {p.name for p in conf_dir.iterdir() if p.is_dir()}  # trainer=ddp: Hydra's
        values = [
            o for o in overrides if not o.startswith(("+", "~")) and o.split("=")[0] not in groups
        ]
        if values:  # the same composition without them is the schema they must fit
            groups = [o for o in overrides if o not in values]
            check_overrides(hydra_compose(config_name=CONFIG_NAME, overrides=groups), values)
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
        plain = [o.removeprefix("+") for o in overrides]  # a params file has no groups
        check_overrides(cfg, plain)
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(plain))
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


def plain(value: Any) -> Any:
    """A config node as plain containers, resolved (anything else as it is)."""
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, object]:
    """Flatten a nested config to dotted keys (for MLflow params)."""
    data = plain(cfg)
    out: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out
