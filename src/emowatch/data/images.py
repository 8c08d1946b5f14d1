"""Read any image Pillow reads as upright grayscale, classifying what cannot be read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

NOT_AN_IMAGE = "not_an_image"
UNREADABLE = "unreadable"


@dataclass
class Loaded:
    """A grayscale image, or the status and error that explain why there is none."""

    gray: np.ndarray | None
    status: str | None = None  # None when loaded, else NOT_AN_IMAGE or UNREADABLE
    error: str | None = None


def load_gray(path: Path | BinaryIO) -> Loaded:
    """Load `path` (a file or a binary stream) as an upright uint8 grayscale array.

    Honours the EXIF orientation of phone photos; palette, RGB(A) and 16-bit images are
    converted to 8-bit grey. Files Pillow cannot identify are `not_an_image`; truncated or
    corrupt ones are `unreadable`.
    """
    try:
        with Image.open(path) as img:
            img.load()  # decode now so truncation surfaces here
            upright = ImageOps.exif_transpose(img)
            if upright.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(upright, dtype=np.float64)
                span = max(arr.max() - arr.min(), 1.0)
                return Loaded(((arr - arr.min()) * 255.0 / span).astype(np.uint8))
            return Loaded(np.asarray(upright.convert("L"), dtype=np.uint8))
    except UnidentifiedImageError as err:
        return Loaded(None, NOT_AN_IMAGE, str(err))
    except (OSError, ValueError, SyntaxError) as err:
        return Loaded(None, UNREADABLE, f"{type(err).__name__}: {err}")


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """An image at size × size (area interpolation when shrinking, linear when growing)."""
    if img.shape[:2] == (size, size):
        return img
    interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)
