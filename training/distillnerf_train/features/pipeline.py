"""Foundation-feature targets for a whole dataset: extract, fit the 64-d PCA reducer, write per-camera files.

Two passes keep memory bounded on the full dataset: pass 1 extracts features of an evenly spaced subset of the
camera images and fits the reducer on a random subset of their patches; pass 2 extracts every image again and
writes ``<out>/<sample_data_token>.npz`` (``features`` [64,h,w] float16 = reduced CLIP; with DINOv2 also
``clip_features`` and ``dino_features``) plus ``<out>/reducer.pt`` (the dict the trainer copies into checkpoint
extras: ``reducer`` and ``text_encoder``; ``dino_reducer`` when DINOv2 was used).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from distillnerf.foundation import FeatureReducer, OpenClipTextEncoder, create_dinov2, create_open_clip
from distillnerf.rig import NUSCENES_CAMERAS

from ..data.files import load_image, open_nuscenes
from .extractors import DinoV2Extractor, MaskClipExtractor


@dataclass
class FeatureJob:
    """Everything ``distillnerf features`` needs (CLI arguments over distillnerf_train/configs/train/features.yaml)."""

    data: str
    version: str
    clip_model: str
    clip_weights: str
    dino_model: str | None = None
    dino_weights: str | None = None
    size: tuple[int, int] = (448, 252)  # W, H fed to the foundation models
    out: str | None = None  # default <data>/features
    feature_dim: int = 64
    fit_max_images: int = 600
    fit_patches_per_image: int = 256
    batch_size: int = 6
    seed: int = 0
    device: str = "cpu"


def camera_images(dataroot: str | os.PathLike, version: str) -> list[tuple[str, Path]]:
    """(sample_data token, image path) of every keyframe camera, scene order, then time, then model camera order."""
    nusc = open_nuscenes(dataroot, version)
    images = []
    for scene in nusc.scene:
        token = scene["first_sample_token"]
        while token:
            sample = nusc.get("sample", token)
            for channel in NUSCENES_CAMERAS:
                sd_token = sample["data"].get(channel)
                if sd_token:
                    images.append((sd_token, Path(dataroot) / nusc.get("sample_data", sd_token)["filename"]))
            token = sample["next"]
    if not images:
        raise ValueError(f"{dataroot}: no keyframe camera images in {version}")
    return images


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _load_batch(paths: list[Path], size: tuple[int, int], device: str) -> torch.Tensor:
    return torch.stack([load_image(path, size)[0] for path in paths]).to(device)


def _sample_patches(dense: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Random patch vectors [<=count*B, D] from dense features [B, D, h, w]."""
    flat = dense.permute(0, 2, 3, 1).reshape(dense.shape[0], -1, dense.shape[1])
    picks = [f[torch.randperm(f.shape[0], generator=generator)[:count]] for f in flat]
    return torch.cat(picks).cpu()


def fit_reducers(images: list[tuple[str, Path]], extractors: dict[str, torch.nn.Module], job: FeatureJob,
                 ) -> dict[str, FeatureReducer]:
    """Pass 1: fit one reducer per extractor on patches of an evenly spaced subset of images."""
    chosen = images if len(images) <= job.fit_max_images else [
        images[i] for i in np.linspace(0, len(images) - 1, job.fit_max_images).round().astype(int)]
    generator = torch.Generator().manual_seed(job.seed)
    pools: dict[str, list[torch.Tensor]] = {name: [] for name in extractors}
    for batch in _batches(chosen, job.batch_size):
        pixels = _load_batch([path for _, path in batch], job.size, job.device)
        for name, extractor in extractors.items():
            pools[name].append(_sample_patches(extractor(pixels), job.fit_patches_per_image, generator))
    return {name: FeatureReducer(job.feature_dim).fit(torch.cat(pool), seed=job.seed) for name, pool in pools.items()}


def write_targets(images: list[tuple[str, Path]], extractors: dict[str, torch.nn.Module],
                  reducers: dict[str, FeatureReducer], job: FeatureJob, out: Path,
                  progress: Callable[[int, int], None] | None = None) -> int:
    """Pass 2: reduce every image's dense features and write one npz per camera image."""
    written = 0
    for batch in _batches(images, job.batch_size):
        pixels = _load_batch([path for _, path in batch], job.size, job.device)
        reduced = {name: reducers[name].reduce(extractor(pixels).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
                   for name, extractor in extractors.items()}
        for i, (token, _) in enumerate(batch):
            arrays = {"features": reduced["clip"][i].cpu().numpy().astype(np.float16)}
            if "dino" in reduced:
                arrays["clip_features"] = arrays["features"]
                arrays["dino_features"] = reduced["dino"][i].cpu().numpy().astype(np.float16)
            np.savez_compressed(out / f"{token}.npz", **arrays)
            written += 1
        if progress is not None:
            progress(written, len(images))
    return written


def run_features(job: FeatureJob, progress: Callable[[int, int], None] | None = None) -> Path:
    """Extract, fit and write everything for ``job``; returns the output folder."""
    out = Path(job.out) if job.out else Path(job.data) / "features"
    out.mkdir(parents=True, exist_ok=True)
    images = camera_images(job.data, job.version)
    clip = create_open_clip(job.clip_model, job.clip_weights, job.device)
    extractors: dict[str, torch.nn.Module] = {"clip": MaskClipExtractor(clip)}
    if job.dino_model:
        extractors["dino"] = DinoV2Extractor(create_dinov2(job.dino_model, job.dino_weights, job.device))
    reducers = fit_reducers(images, extractors, job)
    write_targets(images, extractors, reducers, job, out, progress)
    text_encoder = OpenClipTextEncoder(job.clip_model, Path(job.clip_weights).resolve(), "cpu")
    from .semantic import class_targets

    meta = {"reducer": reducers["clip"].state_dict(), "text_encoder": text_encoder.spec(),
            **class_targets(text_encoder, reducers["clip"]),
            "size": list(job.size), "num_images": len(images)}
    if "dino" in reducers:
        meta["dino_reducer"] = reducers["dino"].state_dict()
        meta["dino_model"] = job.dino_model
    torch.save(meta, out / "reducer.pt")
    return out


def load_reducer_file(path: str | os.PathLike) -> dict:
    """``reducer.pt`` as written by :func:`run_features` (plain tensors and dicts; safe to load)."""
    return torch.load(path, map_location="cpu", weights_only=True)
