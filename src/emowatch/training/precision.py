"""The Trainer's precision on this machine: bf16 autocast only where the CPU computes bf16
natively.

bf16-mixed roughly doubles vgg's training speed on a CPU with AVX512-BF16 or AMX (the 2-core
EPYC: 266 -> 594 images/s); on a CPU without them oneDNN emulates bf16, 1.6x slower than fp32
when simulated here (`ONEDNN_MAX_CPU_ISA=AVX512_CORE`, README "Where the CPU hour goes"). One
2-core machine's 110 s vgg epochs (against about 52 s) are consistent with that; not proven.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig


def native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX); oneDNN's own check
    (`_is_mkldnn_bf16_supported`) also says yes for plain AVX-512, where bf16 is emulated."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def effective(trainer_cfg: DictConfig) -> str:
    """The configured precision, with CPU bf16 replaced by fp32 where it is emulated."""
    precision = str(trainer_cfg.get("precision", "32-true"))
    on_cpu = str(trainer_cfg.get("accelerator", "auto")) == "cpu"
    if on_cpu and precision.startswith("bf16") and not native_bf16():
        print(f"this CPU has no native bf16: trainer.precision {precision} -> 32-true")
        return "32-true"
    return precision
