"""Every `_target_` emowatch instantiates goes through one allow-list, by role.

A config names classes to build (`_target_`), and some configs come from files that travel:
`model.json` beside a trained model (pulled from the DVC remote by the retrain job), the
registry's network spec, `params.yaml`. Hydra would import and call whatever they name; here a
node is built only when every `_target_` in it, at any depth, is allowed for its role: exact
names for emowatch's own classes, one module's public names for torch, Lightning and
albumentations (`torch.optim.Adam`, never `torch.optim.sub.module.thing` or `os.system`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from emowatch.errors import UnsafeModelError

NETWORKS = ("emowatch.models.nets.ConvNet", "emowatch.models.backbones.Backbone")

# role -> the exact names allowed, and the modules whose public (capitalised) names are.
ALLOWED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "network": (NETWORKS, ()),
    "optimizer": ((), ("torch.optim",)),
    "scheduler": (("emowatch.models.schedules.constant_then_exp",), ("torch.optim.lr_scheduler",)),
    "trainer": (("lightning.pytorch.Trainer",), ()),
    "transform": ((), ("albumentations",)),
}
PUBLIC_NAME = re.compile(r"[A-Z][A-Za-z0-9]*")


def targets_in(node: Any) -> list[str]:
    """Every `_target_` anywhere in a config tree (dicts, lists, OmegaConf nodes)."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, Mapping):
        found = [str(node["_target_"])] if "_target_" in node else []
        return found + [t for k, v in node.items() if k != "_target_" for t in targets_in(v)]
    if isinstance(node, list):
        return [t for v in node for t in targets_in(v)]
    return []


def allowed(target: str, role: str) -> bool:
    exact, modules = ALLOWED[role]
    module, _, name = target.rpartition(".")
    return target in exact or (module in modules and PUBLIC_NAME.fullmatch(name) is not None)


def check(node: Any, role: str, where: str = "config") -> None:
    """Refuse (UnsafeModelError) a node with no `_target_` or with one its role does not allow."""
    found = targets_in(node)
    refused = [t for t in found if not allowed(t, role)]
    if refused or not found:
        exact, modules = ALLOWED[role]
        names = [*exact, *(f"{m}.<Class>" for m in modules)]
        raise UnsafeModelError(
            f"refused to build the {role} {refused or '(no _target_)'} named in {where}: "
            f"emowatch builds only {names}"
        )


def build(node: Any, role: str, where: str = "config", **kwargs: Any) -> Any:
    """`hydra.utils.instantiate(node, **kwargs)` once `check` passed."""
    check(node, role, where)
    return instantiate(node, **kwargs)
