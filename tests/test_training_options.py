"""The training options of issue 17, each on its own: MixUp/CutMix batches, class-aware loss
weights, bf16 only where the CPU has it, one log line per epoch, a model's training share."""

from __future__ import annotations

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from emowatch.data.splits import SplitArrays
from emowatch.models.lightning_module import EmotionClassifier
from emowatch.stages.train import training_share
from emowatch.training import fit, mixing, precision, progress

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def test_mixing_blends_images_and_labels_and_p_zero_leaves_them():
    torch.manual_seed(0)
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 7
    mix = mixing.build(OmegaConf.create({"mixup_alpha": 0.4, "cutmix_alpha": 0.0}), 7)
    mixed, soft = mix(x, y)
    assert soft.shape == (16, 7) and torch.allclose(soft.sum(1), torch.ones(16))
    assert (soft.max(1).values < 1).any() and not torch.equal(mixed, x)
    keep = mixing.build(OmegaConf.create({"mixup_alpha": 0.4, "p": 0.0}), 7)
    same, hard = keep(x, y)
    assert torch.equal(same, x) and torch.equal(hard.argmax(1), y)
    assert mixing.build(None, 7) is None
    assert mixing.build(OmegaConf.create({"mixup_alpha": 0, "cutmix_alpha": 0}), 7) is None


def test_a_mixed_batch_trains_on_soft_targets():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 7))
    mix = mixing.build(OmegaConf.create({"cutmix_alpha": 1.0}), 7)
    module = EmotionClassifier(net, lambda params: torch.optim.SGD(params, lr=0.1), CLASSES,
                               batch_transform=mix, channels_last=True)  # fmt: skip
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 7
    loss = module._step((x, y), "train")
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_class_weight_multiplies_the_dataset_weights_by_name():
    mcfg = OmegaConf.create({"class_weight": {"angry": 2.0}})
    assert fit.loss_weights(mcfg, None, CLASSES) == [2.0] + [1.0] * 6
    assert fit.loss_weights(mcfg, [0.5] * 7, CLASSES) == [1.0] + [0.5] * 6
    assert fit.loss_weights(OmegaConf.create({}), None, CLASSES) is None
    with pytest.raises(ValueError, match="unknown classes"):
        fit.loss_weights(OmegaConf.create({"class_weight": {"furious": 2}}), None, CLASSES)


def test_cpu_bf16_falls_back_to_fp32_where_it_is_emulated(monkeypatch, capsys):
    cpu = OmegaConf.create({"accelerator": "cpu", "precision": "bf16-mixed"})
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    assert precision.effective(cpu) == "bf16-mixed"
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    assert precision.effective(cpu) == "32-true"
    assert "no native bf16" in capsys.readouterr().out
    gpu = OmegaConf.create({"accelerator": "gpu", "precision": "bf16-mixed"})
    assert precision.effective(gpu) == "bf16-mixed"  # GPUs are not this module's business


def test_epoch_lines_print_one_line_per_epoch_with_the_main_metrics(capsys):
    x, y = torch.rand(32, 1, 8, 8), torch.arange(32) % 7
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 7))
    module = EmotionClassifier(net, lambda params: torch.optim.SGD(params, lr=0.1), CLASSES)
    trainer = L.Trainer(max_epochs=3, callbacks=[progress.EpochLines()], logger=False,
                        enable_checkpointing=False, enable_model_summary=False,
                        num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(module, data, data)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all("train/loss" in line and "val/acc" in line for line in lines)
    assert "\r" not in "".join(lines)


def test_epoch_lines_only_when_stdout_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert [type(b) for b in progress.for_stdout()] == [progress.EpochLines]
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert progress.for_stdout() == []


def test_training_share_cuts_only_the_training_split_stratified():
    y = np.repeat(np.arange(7), 20)
    x = np.zeros((len(y), 4, 4), np.uint8)
    arrays = SplitArrays({s: x for s in ("train", "val", "test")},
                         {s: y for s in ("train", "val", "test")}, CLASSES)  # fmt: skip
    cut = training_share(arrays, OmegaConf.create({"train_fraction": 0.1}), seed=0)
    assert len(cut.y["train"]) == 14 and np.bincount(cut.y["train"]).tolist() == [2] * 7
    assert len(cut.y["val"]) == len(cut.y["test"]) == 140
    assert training_share(arrays, OmegaConf.create({}), seed=0) is arrays


def test_known_dependency_noise_is_filtered_by_message_and_module_only(caplog):
    import logging
    import warnings

    from emowatch import warning_filters

    warning_filters.quiet()
    warning_filters.quiet()  # idempotent
    with warnings.catch_warnings(record=True) as seen:
        warnings.filterwarnings("always", module="tests")
        pytree, ckpt = "`isinstance(treespec, LeafSpec)` is deprecated", "Checkpoint directory x"
        for message, module in (
            (pytree, "lightning.pytorch.utilities._pytree"),
            (f"{ckpt} exists and is not empty.", "lightning.pytorch.callbacks.model_checkpoint"),
            (f"{ckpt} exists and is not empty.", "tests.elsewhere"),
        ):
            warnings.warn_explicit(message, UserWarning, "f.py", 1, module=module)
    assert [str(w.message) for w in seen] == [f"{ckpt} exists and is not empty."]
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger=log.name):
        log.info("💡 Tip: try installing litlogger")
        log.info("GPU available: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False"]
