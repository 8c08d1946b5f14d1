"""A params file is checked against conf/ before a stage reads it (`--params params.yaml`).

conf/ is the schema: the file's keys must be keys of conf/ composed with the file's profile,
each value of the kind conf/ gives it (`config.check_overrides`' rule: an integer fits a
number, null fits anything, a string key takes any scalar, an option that is off may be
switched on). A group with several options (`trainer=ddp`, `scheduler=cosine`, another net
under `models.X`) may add its option's keys. Lives in the command line, like option parsing:
it decides whether a stage runs, never what it writes, so editing it re-runs no stage.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from emowatch import config

# The rule of config.check_overrides, shared rather than copied.
from emowatch.config import _ABSENT, ConfigError, _fits, _kind, _leaves, _switched_on

# Groups with several options and where an option lands in the composed config.
ALTERNATIVES = {
    "trainer": "trainer",
    "scheduler": "scheduler",
    "net": "models.*",
    "detector": "detector",
}


def alternative_keys(conf_dir: Path) -> set[str]:
    """Every dotted key an option of a group in `ALTERNATIVES` may put into a params file
    (`models.*` standing for any model)."""
    keys: set[str] = set()
    for group, section in ALTERNATIVES.items():
        for option in sorted((conf_dir / group).glob("*.yaml")):
            node = OmegaConf.to_container(OmegaConf.load(option), resolve=False)
            leaves = _leaves({k: v for k, v in dict(node or {}).items() if k != "defaults"})
            keys |= {f"{section}.{k}" for k in leaves}
    return keys


def matches(key: str, alternatives: set[str]) -> bool:
    """Whether `key` is, holds or sits under a key that an alternative option holds."""
    parts = key.split(".")
    if parts[0] == "models" and len(parts) > 2:
        key = ".".join(["models", "*", *parts[2:]])
    return any(key == a or key.startswith(f"{a}.") or a.startswith(f"{key}.") for a in alternatives)


def check_params_file(cfg: DictConfig, path: Path) -> None:
    """Refuse (ConfigError, one line) a params file that holds a key conf/ does not know or a
    value of another kind than conf/ gives it, naming the key, the kind and the nearest keys.
    Without conf/ above the file (a params file carried elsewhere) there is nothing to check
    against."""
    try:
        root = config.find_root(path.resolve().parent)
    except ConfigError:
        return
    profile = cfg.get("profile", "cpu")
    if not (root / "conf" / "profile" / f"{profile}.yaml").is_file():
        raise ConfigError(f"{path}: profile={profile!r} is not a file of conf/profile/")
    schema = config.compose([f"profile={profile}"], root)
    known = _leaves(OmegaConf.to_container(schema, resolve=False))
    others = alternative_keys(root / "conf")
    for key, value in _leaves(OmegaConf.to_container(cfg, resolve=False)).items():
        old = OmegaConf.select(schema, key, default=_ABSENT)
        if old is _ABSENT:
            if _switched_on(schema, key) or matches(key, others):
                continue
            near = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ConfigError(
                f"{path}: unknown key {key}{hint} (edit conf/, then `emowatch params`)"
            )
        if not _fits(value, old) and not matches(key, others):
            raise ConfigError(
                f"{path}: {key}: {value!r} is {_kind(value)}, but {key} holds {_kind(old)} "
                f"(conf/ gives {old!r})"
            )


def load(params: Path | None, overrides: list[str]) -> DictConfig:
    """`config.load`, a params file checked against conf/ first."""
    if params is not None and params.is_file():
        loaded = OmegaConf.load(params)
        assert isinstance(loaded, DictConfig)
        check_params_file(loaded, params)
    return config.load(params, overrides)
