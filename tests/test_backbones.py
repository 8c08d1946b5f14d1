"""Transfer backbones: offline weight resolution, input adaptation, freezing."""

from __future__ import annotations

import pytest
import torch
import torchvision

from emowatch.models import backbones
from emowatch.models.backbones import Backbone, WeightsError


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_missing_imagenet_weights_say_which_file_goes_where(torch_home):
    assert backbones.resolve_weights("resnet50", "none") is None
    with pytest.raises(WeightsError, match=r"resnet50-0676ba61\.pth") as err:
        backbones.resolve_weights("resnet50", "imagenet")
    assert str(torch_home) in str(err.value)
    with pytest.raises(WeightsError, match="make weights"):
        backbones.resolve_weights("mobilenet_v2", "imagenet")
    with pytest.raises(WeightsError, match="not found"):
        backbones.resolve_weights("mobilenet_v2", str(torch_home / "nope.pth"))
    with pytest.raises(ValueError, match="unknown backbone"):
        backbones.resolve_weights("vgg99", "none")


def test_cached_imagenet_weights_load_with_every_key_matched(torch_home):
    reference = torchvision.models.mobilenet_v2(weights=None)
    torch_home.mkdir(parents=True)
    torch.save(reference.state_dict(), torch_home / "mobilenet_v2-b0353104.pth")
    net = Backbone("mobilenet_v2", num_classes=7, weights="imagenet")
    assert net.weights_file.endswith("mobilenet_v2-b0353104.pth")
    first = net.body.features[0][0].weight
    assert torch.equal(first, reference.features[0][0].weight)
    assert torch.allclose(net.mean.flatten(), torch.tensor(backbones.IMAGENET_MEAN))


def test_grayscale_48px_faces_go_through_and_freezing_keeps_bn_still(torch_home):
    net = Backbone("resnet50", num_classes=4, weights="none", resize=64)
    assert net(torch.zeros(2, 1, 48, 48)).shape == (2, 4)
    backbones.freeze(net, trainable_blocks=1)
    trainable = {n.split(".")[1] for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"layer4", "fc"}
    net.train()
    backbones.keep_frozen_bn_eval(net)
    assert not net.body.bn1.training and net.body.layer4[0].bn1.training
