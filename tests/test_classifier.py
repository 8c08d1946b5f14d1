"""The LightningModule: it learns (overfits one batch) and logs the metrics by name."""

from __future__ import annotations

import functools

import lightning.pytorch as L
import torch

from emowatch.models.lightning_module import EmotionClassifier
from emowatch.models.nets import ConvNet

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def module(**kwargs):
    net = ConvNet(7, filters=[8, 16], units=[32])
    return EmotionClassifier(net, functools.partial(torch.optim.Adam, lr=3e-3), CLASSES, **kwargs)


def test_loss_falls_when_overfitting_one_batch():
    torch.manual_seed(0)
    m = module()
    x, y = torch.randn(16, 1, 48, 48), torch.arange(16) % 7
    opt = m.configure_optimizers()
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = m.training_step((x, y), 0)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_trainer_logs_metrics_per_split_with_recall_angry():
    L.seed_everything(0)
    x, y = torch.randn(28, 1, 48, 48), torch.arange(28) % 7
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=7)
    m = module(class_weights=[1.0] * 7, label_smoothing=0.1)
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(m, loader, loader)
    logged = trainer.callback_metrics
    for key in (
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/f1_macro",
        "val/recall_angry",
        "val/recall_neutral",
        "val/precision_angry_at_recall",
    ):
        assert key in logged, key
    probs = trainer.predict(m, loader)[0]
    assert probs.shape == (7, 7) and torch.allclose(probs.sum(1), torch.ones(7))
