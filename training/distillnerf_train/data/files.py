"""Opening a nuScenes-format dataroot and its camera images, with errors that name what is missing or broken."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .augment import CropBox


def open_nuscenes(dataroot: str | Path, version: str):
    """The devkit's NuScenes object, with errors that say what is missing instead of a bare assertion."""
    from nuscenes.nuscenes import NuScenes

    root = Path(dataroot)
    if not root.is_dir():
        raise FileNotFoundError(f"nuScenes dataroot {root} does not exist")
    if not (root / version).is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("v1.0"))
        raise FileNotFoundError(f"{root}: no table folder {version!r} (found: {', '.join(found) or 'none'}); "
                                f"pass the dataset's version")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return NuScenes(version=version, dataroot=str(root), verbose=False)
    except (AssertionError, KeyError, ValueError, OSError) as error:  # the devkit asserts on missing tables
        raise ValueError(f"{root / version}: corrupt or incomplete nuScenes tables ({type(error).__name__}: "
                         f"{error})") from error


def read_reducer_file(path: Path) -> dict:
    """The features command's ``reducer.pt`` (reducer, text encoder, class prototypes) as a dict."""
    meta = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected the features command's dict")
    return meta


def load_image(path: Path, size: tuple[int, int], crop: CropBox | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """``[3,H,W]`` float image (its ``crop``, when given) resized to ``size`` (W, H), and the file's own size."""
    if not path.is_file():
        raise FileNotFoundError(f"camera image missing: {path}")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            original = image.size
            if crop is not None:
                resized = image.resize(size, Image.BILINEAR, box=crop.pixels(*image.size))
            else:
                resized = image.resize(size, Image.BILINEAR) if image.size != tuple(size) else image
            array = np.asarray(resized, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: corrupt image ({type(error).__name__}: {error})") from error
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0, original
