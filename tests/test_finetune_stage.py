"""The `finetune` stage on tiny arrays: two phases, frozen BatchNorm, weights recorded."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow.tracking import MlflowClient

from emowatch.inference.loading import load_trained
from emowatch.layout import Layout
from emowatch.models.backbones import WeightsError
from emowatch.stages import evaluate, finetune

TINY_BACKBONE = (
    "models.mobilenet_v2.net.weights=none",
    "models.mobilenet_v2.net.resize=32",
    "models.mobilenet_v2.max_epochs=2",
    "models.mobilenet_v2.finetune.frozen_epochs=1",
    "models.mobilenet_v2.finetune.trainable_blocks=2",
)


def test_finetune_trains_a_backbone_like_any_model_and_records_its_weights(tiny_fer, tmp_path):
    cfg = tiny_fer(*TINY_BACKBONE)
    metrics = finetune.main(cfg, "mobilenet_v2")
    assert metrics["epochs"] == 2 and {"val", "test"} <= set(metrics)
    model_dir = Layout(cfg).model("fer2013", "mobilenet_v2").model_dir
    info = json.loads((model_dir / "model.json").read_text())
    assert info["net"]["weights"] == "none" and info["net"]["arch"] == "mobilenet_v2"
    net, _ = load_trained(model_dir)  # evaluate/register load it like any other net
    assert net(torch.zeros(2, 1, 48, 48)).shape == (2, 7)
    scored = evaluate.main(cfg, "fer2013", "mobilenet_v2")  # Grad-CAM, feature maps included
    assert 0 <= scored["recall_angry_at_threshold"] <= 1

    client = MlflowClient(f"sqlite:///{cfg.tracking.db}")
    experiment = client.get_experiment_by_name(cfg.tracking.experiment).experiment_id
    (run,) = client.search_runs([experiment], filter_string="tags.`emowatch.stage` = 'train'")
    assert run.data.params["weights_md5"] == "none"
    assert run.data.params["model.finetune.trainable_blocks"] == "2"


def test_frozen_blocks_and_their_batchnorm_statistics_do_not_move(tiny_fer, tmp_path):
    import lightning.pytorch as L

    from emowatch.data.splits import load_dataset
    from emowatch.stages.train import phases
    from emowatch.training.fit import build_datamodule, build_module

    cfg = tiny_fer(*TINY_BACKBONE)
    mcfg = cfg.models.mobilenet_v2
    arrays = load_dataset(cfg, "fer2013")
    module = build_module(cfg, mcfg, arrays, "fer2013", None)
    bottom = module.net.body.features[1]
    before = {k: v.clone() for k, v in bottom.state_dict().items()}
    top_before = module.net.body.features[-1][0].weight.clone()
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=phases(mcfg),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=build_datamodule(cfg, arrays, "fer2013", 8, None))
    for key, value in bottom.state_dict().items():  # weights and BN running stats
        assert torch.equal(value, before[key]), key
    assert not torch.equal(module.net.body.features[-1][0].weight, top_before)
    assert len(trainer.optimizers[0].param_groups) == 2  # head + the unfrozen top blocks


def test_missing_weights_fail_before_any_training(tiny_fer, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    cfg = tiny_fer()
    with pytest.raises(WeightsError, match="make weights"):
        finetune.main(cfg, "mobilenet_v2")
    with pytest.raises(ValueError, match="not a backbone"):
        finetune.main(cfg, "cnn1")
