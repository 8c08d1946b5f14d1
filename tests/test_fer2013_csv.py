"""The vectorised FER2013 CSV reader: valid rows parsed, every malformed row rejected by line."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from emowatch.data.fer2013 import SPLITS, read_csv
from emowatch.errors import DataError
from tests.conftest import good_rows, pixels, write_csv

BAD = [
    ("3", pixels(1) + " 7", "Training"),  # 2305 values
    ("9", pixels(2), "Training"),  # label outside 0-6
    ("x", pixels(3), "Training"),  # label not an integer
    ("2", pixels(4), "Validation"),  # unknown Usage
    ("2", pixels(5).replace(" ", " a", 1), "Training"),  # non-integer pixel
    ("1", "300" + pixels(6)[pixels(6).index(" ") :], "PublicTest"),  # value above 255
    ("1", "99999" + pixels(7)[pixels(7).index(" ") :], "PublicTest"),  # overflows int16
    "4,1 2 3",  # two fields
]
REASONS = [
    "2305 pixel values, expected 2304",
    "label '9' outside 0-6",
    "label 'x' outside 0-6",
    "unknown Usage 'Validation'",
    "non-integer pixel value",
    "pixel value above 255",
    "pixel value above 255",
    "2 fields, expected 3",
]


def test_valid_rows_become_arrays(tmp_path):
    rows = good_rows(4)
    table = read_csv(write_csv(tmp_path / "f.csv", rows))
    assert table.images.shape == (12, 48, 48) and table.images.dtype == np.uint8
    assert table.n_read == 12 and table.rejected == []
    assert table.labels.tolist() == [int(r[0]) for r in rows]
    assert [SPLITS[s] for s in table.split] == ["train"] * 4 + ["val"] * 4 + ["test"] * 4
    first = np.array(rows[0][1].split(), dtype=np.uint8).reshape(48, 48)
    np.testing.assert_array_equal(table.images[0], first)
    assert table.row.tolist() == list(range(12))


def test_each_malformed_row_is_rejected_with_line_and_reason(tmp_path):
    rows = good_rows(2)[:2] + BAD + good_rows(2)[2:]
    table = read_csv(write_csv(tmp_path / "f.csv", rows))
    assert len(table.images) == 6
    assert [r["reason"] for r in table.rejected] == REASONS
    # data row 2 is the first bad one; line numbers count the header as line 1
    assert [r["row"] for r in table.rejected] == list(range(2, 10))
    assert [r["line"] for r in table.rejected] == list(range(4, 12))
    assert table.row.tolist() == [0, 1, 10, 11, 12, 13]


def test_gzip_crlf_quotes_and_column_order(tmp_path):
    rows = good_rows(1)
    text = "Usage,emotion,pixels\r\n" + "".join(f'{u},{e},"{p}"\r\n' for e, p, u in rows)
    path = tmp_path / "f.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    table = read_csv(path)
    assert table.rejected == [] and table.labels.tolist() == [0, 0, 0]


def test_missing_file_and_wrong_header_fail_clearly(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_csv(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="lacks one of emotion, pixels, Usage"):
        read_csv(write_csv(tmp_path / "h.csv", [], header="label,image"))


@pytest.mark.parametrize("damage", ["truncated", "bad block"])
def test_a_corrupt_gzip_is_one_clear_error(tmp_path, damage):
    data = gzip.compress(write_csv(tmp_path / "f.csv", good_rows(2)).read_bytes())
    bad = data[: len(data) // 2] if damage == "truncated" else data[:10] + b"\xff" * 20 + data[30:]
    path = tmp_path / "f.csv.gz"
    path.write_bytes(bad)
    with pytest.raises(DataError, match=r"f\.csv\.gz: corrupt gzip file .*`dvc pull data\.dvc`"):
        read_csv(path)
