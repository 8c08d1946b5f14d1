"""Known noise from dependencies, silenced at its source: each filter names the message and
the module that raises it, so every other warning (ours, or a new one of theirs) still shows."""

from __future__ import annotations

import logging
import warnings

# (message regex, module that warns): harmless for us, printed at every training run.
WARNINGS = (
    # Lightning 2.6 against torch 2.14's pytree: a deprecation inside Lightning, not our code.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\."),
    # The model summary sizes parameters in fp32 under bf16 autocast; the sizes are fp32 anyway.
    (r"Precision bf16-mixed is not supported by the model summary", r"lightning\.pytorch\."),
    # Our checkpoint folder holds state.json (the resume fingerprint) before the first checkpoint.
    (r"Checkpoint directory .* exists and is not empty", r"lightning\.pytorch\.callbacks\."),
)


class _NoTips(logging.Filter):
    """Lightning's advertisements ('💡 Tip: ... try installing litlogger')."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet() -> None:
    """Install the filters (idempotent)."""
    for message, module in WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in log.filters):
        log.addFilter(_NoTips())
