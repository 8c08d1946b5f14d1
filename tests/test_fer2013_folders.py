"""The image-folder layout reader: train/<class>/*, test/<class>/*, val carved from train."""

from __future__ import annotations

import numpy as np
from PIL import Image

from emowatch.data.fer2013 import SPLITS, read_folders

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def make_layout(root, per_class=4):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("angry", "happy"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(
                    folder / f"{i}.png"
                )
    Image.fromarray(rng.integers(0, 256, (96, 64, 3), dtype=np.uint8)).save(
        root / "train/happy/big.jpg"
    )
    (root / "train/angry/notes.jpg").write_text("not an image")
    (root / "train/contempt").mkdir()
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(root / "train/contempt/c.png")
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(root / "train/loose.png")


def test_reads_layout_and_rejects_bad_files(tmp_path):
    make_layout(tmp_path)
    table = read_folders(tmp_path, CLASSES, val_fraction=0.25, seed=0)
    assert table.n_read == 20
    reasons = {r["where"]: r["reason"] for r in table.rejected}
    assert reasons["train/angry/notes.jpg"].startswith("not an image")
    assert reasons["train/contempt/c.png"] == "unknown class folder 'contempt'"
    assert reasons["train/loose.png"] == "not inside a class folder"
    assert table.images.shape == (17, 48, 48)  # big.jpg resized and converted to grey
    split = [SPLITS[s] for s in table.split]
    assert split.count("test") == 8 and split.count("val") == 3 and split.count("train") == 6
    val_labels = table.labels[table.split == SPLITS.index("val")]
    assert set(val_labels.tolist()) == {0, 3}  # stratified: both classes in val
