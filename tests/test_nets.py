"""The CNN series networks: shapes on both datasets, and the config-built variants."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from emowatch import config
from emowatch.models.nets import ConvNet
from emowatch.models.schedules import constant_then_exp
from tests.conftest import REPO


@pytest.mark.parametrize("model", ["cnn1", "cnn2", "cnn3"])
@pytest.mark.parametrize(("size", "classes"), [(48, 7), (96, 4)])
def test_series_from_config_gives_logits_per_class(model, size, classes):
    cfg = config.compose(root=REPO)
    net = instantiate(cfg.models[model].net, num_classes=classes, in_channels=1, input_size=size)
    assert net(torch.zeros(3, 1, size, size)).shape == (3, classes)


def test_seed_model_sizes():
    net = ConvNet(7, filters=[32, 64], units=[64])
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64]
    dense = [m for m in net.classifier if isinstance(m, torch.nn.Linear)]
    assert [d.in_features for d in dense] == [64 * 12 * 12, 64]


def test_vgg_style_variant_and_bad_configs():
    net = ConvNet(
        7, filters=[16, 32, 64, 128], convs_per_block=2, batch_norm=True, units=[], pool="gap"
    )
    assert net(torch.zeros(2, 1, 48, 48)).shape == (2, 7)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.features) == 8
    with pytest.raises(ValueError, match="pool"):
        ConvNet(7, pool="max")
    with pytest.raises(ValueError, match="do not fit"):
        ConvNet(7, input_size=8, filters=[8, 8, 8, 8])


def test_seed_schedule_is_constant_then_decays():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = constant_then_exp(opt, constant_epochs=2, decay=0.1)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:2] == [1.0, 1.0]
    assert lrs[2] == pytest.approx(torch.exp(torch.tensor(-0.1)).item())
    assert lrs[3] == pytest.approx(torch.exp(torch.tensor(-0.2)).item())
