"""FER+ majority-vote labels."""

from __future__ import annotations

import pytest

from emowatch.data.ferplus import majority_labels
from emowatch.errors import DataError

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
HEADER = (
    "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
)


def write_ferplus(path, rows):
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return path


def test_majority_vote_and_drop_reasons(tmp_path):
    path = write_ferplus(
        tmp_path / "fp.csv",
        [
            "Training,fer0.png,0,0,0,0,8,1,1,0,0,0",  # anger majority -> angry
            "Training,fer1.png,5,5,0,0,0,0,0,0,0,0",  # tie -> no majority
            "PublicTest,,0,0,0,0,0,0,0,0,0,10",  # no image name -> not a face
            "PublicTest,fer3.png,1,0,0,0,0,0,0,9,0,0",  # contempt
            "PrivateTest,fer4.png,0,6,1,0,0,0,0,0,3,0",  # happiness -> happy
            "PrivateTest,fer5.png,0,0,0,0,0,0,0,0,2,8",  # NF wins -> not a face
        ],
    )
    usage, labels, reasons = majority_labels(path, CLASSES)
    assert usage.tolist()[:3] == ["Training", "Training", "PublicTest"]
    assert labels.tolist() == [0, -1, -1, -1, 3, -1]
    assert reasons.tolist() == ["", "no_majority", "not_a_face", "contempt", "", "not_a_face"]


def test_wrong_format_fails(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="columns"):
        majority_labels(bad, CLASSES)
