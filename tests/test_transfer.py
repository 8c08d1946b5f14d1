"""Photo models start from the FER2013 model of the same name (train.photos.init_from)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from emowatch.data.splits import load_photos
from emowatch.errors import DataError
from emowatch.layout import Layout
from emowatch.models.nets import ConvNet
from emowatch.stages import train, tune
from emowatch.training import transfer

PHOTO_CLASSES = ["angry", "happy", "neutral", "sad"]
TINY_PHOTOS = (
    "train.photos.max_epochs=2",
    "train.photos.batch_size=4",
    "tune.photos.n_trials=2",
    "tune.photos.epochs=1",
)


def make_photo_crops(cfg, per_class: int = 3, size: int = 96) -> None:
    """Crops and split lists as `crop_faces` writes them (bands per class, like the FER fixture)."""
    out, rng = Path(cfg.data.photos.out_dir), np.random.default_rng(1)
    lists: dict = {"classes": PHOTO_CLASSES}
    fer_index = {"angry": 0, "happy": 3, "sad": 4, "neutral": 6}
    for split in ("train", "val", "test"):
        lists[split] = []
        for label, cls in enumerate(PHOTO_CLASSES):
            for i in range(per_class):
                img = rng.integers(0, 60, (size, size)).astype(np.uint8)
                c = fer_index[cls]
                img[c * size // 7 : (c + 1) * size // 7, :] += 150
                rel = f"{cls}/{split}{i}.png"
                (out / cls).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(out / rel), img)
                lists[split].append({"crop": rel, "label": label, "subject": f"S{i}"})
    Path(cfg.data.photos.splits).write_text(json.dumps(lists))


def fake_source(tmp_path: Path, net: ConvNet, classes: list[str]) -> transfer.Source:
    model_dir = tmp_path / "src_model"
    model_dir.mkdir()
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state}, model_dir / "model.ckpt")
    return transfer.Source("fer2013", model_dir, {"classes": classes})


def test_weights_copy_in_order_and_the_head_keeps_the_shared_class_rows(tmp_path):
    fer = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    src_net = ConvNet(7, filters=[4, 8], units=[8])
    source = fake_source(tmp_path, src_net, fer)
    # Dropout layers shift the module indices: weights still map tensor by tensor.
    net = ConvNet(4, filters=[4, 8], units=[8], conv_dropout=0.2, dense_dropout=0.3)
    copied = transfer.load_weights(net, source, PHOTO_CLASSES)
    assert copied == {"tensors_copied": 6, "head_rows_copied": 4}
    src_conv = src_net.features[0].weight
    assert torch.equal(net.features[0].weight, src_conv)
    rows = [fer.index(c) for c in PHOTO_CLASSES]
    assert torch.equal(net.classifier[-1].weight, src_net.classifier[-1].weight[rows])
    assert torch.equal(net.classifier[-1].bias, src_net.classifier[-1].bias[rows])


def test_a_different_architecture_is_refused(tmp_path):
    source = fake_source(tmp_path, ConvNet(7, filters=[4, 8], units=[8]), list("abcdefg"))
    with pytest.raises(DataError, match="not the same architecture"):
        transfer.load_weights(ConvNet(4, filters=[4, 16], units=[8]), source, list("abcd"))


def test_a_missing_source_model_says_which_stage_makes_it(make_cfg):
    cfg = make_cfg()
    with pytest.raises(DataError, match=r"dvc repro train@fer2013-cnn1"):
        transfer.find_source(cfg, "photos", "cnn1", None)
    assert transfer.find_source(cfg, "fer2013", "cnn1", None) is None


def test_photos_are_read_at_the_model_input_size(make_cfg):
    cfg = make_cfg()
    make_photo_crops(cfg)
    arrays = load_photos(cfg)
    assert arrays.image_size == cfg.data.photos.image_size == 48
    assert arrays.classes == PHOTO_CLASSES and len(arrays.y["test"]) == 12


def test_photo_models_fine_tune_the_fer2013_models(tiny_fer, tmp_path):
    cfg = tiny_fer(*TINY_PHOTOS)
    make_photo_crops(cfg)
    train.main(cfg, "fer2013", "cnn1")
    metrics = train.main(cfg, "photos", "cnn1")
    assert metrics["test"]["n"] == 12
    info = json.loads(Layout(cfg).model("photos", "cnn1").spec.read_text())
    assert info["init_from"] == "fer2013/cnn1" and info["input_shape"] == [1, 48, 48]
    assert info["net"]["filters"] == [8, 16]
    mcfg, _, _, source = train.model_config(cfg, "photos", "cnn1", None)
    assert source.dataset == "fer2013"
    assert mcfg.optimizer.lr == pytest.approx(cfg.models.cnn1.optimizer.lr * 0.3)


def test_the_photos_study_tunes_fine_tuning_not_layer_sizes(tiny_fer):
    cfg = tiny_fer(*TINY_PHOTOS, "tune.target_model=cnn1")
    make_photo_crops(cfg)
    with pytest.raises(DataError, match="train@fer2013-cnn1"):
        tune.main(cfg, "photos")
    train.main(cfg, "fer2013", "cnn1")
    record = tune.main(cfg, "photos")
    assert record["base_model"] == "fer2013/cnn1"
    assert set(record["params"]) == {"conv_dropout", "dense_dropout", "lr", "batch_size"}
