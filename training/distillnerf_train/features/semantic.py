"""Foundation-feature targets from exact semantics, for datasets that have them (the synthetic world).

No CLIP weights can be downloaded here, so the shipped checkpoint cannot distil real CLIP image features. Instead,
each pixel's target is the reduced CLIP *text* embedding of its class prompt ("a photo of a car"), computed with
the same text tower, PCA reducer and prompt the node uses for queries. The feature head then learns a space in
which the node's text queries and semantic occupancy work end to end through the real code path. This is
supervised by ground-truth semantics, not zero-shot: with real CLIP weights, run ``distillnerf features`` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from distillnerf.config_files import load_yaml
from distillnerf.foundation import FeatureReducer, OpenClipTextEncoder, prompt
from distillnerf.occupancy import FREE_LABEL, OCC3D_CLASSES

SKY_LABEL = 255  # the synthetic world's 2D label for sky pixels


def class_prompt_names() -> list[str]:
    """The Occ3D class names as the node prompts them (underscores read as spaces)."""
    return [name.replace("_", " ") for name in OCC3D_CLASSES[:FREE_LABEL]]


def fit_semantic_reducer(encoder: OpenClipTextEncoder, vocabulary: str = "semantic_vocabulary",
                         dim: int = 64) -> FeatureReducer:
    words = list(dict.fromkeys(class_prompt_names() + list(load_yaml(vocabulary, "foundation")["words"])))
    return FeatureReducer(dim).fit(encoder.encode([prompt(w) for w in words]))


def label_table(encoder: OpenClipTextEncoder, reducer: FeatureReducer) -> torch.Tensor:
    """[256, F] reduced target per 2D label: the 17 classes, sky; other labels map to zeros (never rendered)."""
    names = class_prompt_names()
    reduced = reducer.reduce(encoder.encode([prompt(n) for n in names + ["sky"]]))
    table = torch.zeros(256, reduced.shape[-1])
    table[: len(names)] = reduced[: len(names)]
    table[SKY_LABEL] = reduced[-1]
    return table


def class_targets(encoder, reducer: FeatureReducer) -> dict:
    """The reduced text embedding of every class prompt and sky: the prototypes of the feature-contrast loss."""
    names = class_prompt_names() + ["sky"]
    return {"class_names": names, "class_targets": reducer.reduce(encoder.encode([prompt(n) for n in names])).float()}


def write_semantic_targets(dataroot: str | os.PathLike, clip_model: str, clip_weights: str | os.PathLike,
                           out: str | os.PathLike | None = None, weights_reference: str | None = None) -> dict:
    """Write ``<out>/<sample_data_token>.npz`` (``features`` [F,h,w] float16) and ``<out>/reducer.pt``.

    ``dataroot/gt/depth/<token>.npz`` must hold a 2D ``semantic`` label image (the synthetic world writes it).
    ``weights_reference`` is the weights path stored in the text-encoder spec (default: ``clip_weights``); a
    relative one is resolved against the checkpoint's folder when the node loads it.
    """
    dataroot = Path(dataroot)
    semantic_files = sorted((dataroot / "gt" / "depth").glob("*.npz"))
    if not semantic_files:
        raise FileNotFoundError(f"{dataroot}/gt/depth/*.npz not found: --from-semantics needs a dataset with exact "
                                "per-pixel semantics, such as the synthetic world (`distillnerf synth`)")
    out = Path(out) if out is not None else dataroot / "features"
    out.mkdir(parents=True, exist_ok=True)
    encoder = OpenClipTextEncoder(clip_model, clip_weights)
    reducer = fit_semantic_reducer(encoder)
    table = label_table(encoder, reducer).numpy().astype(np.float16)
    for file in semantic_files:
        with np.load(file) as data:
            if "semantic" not in data:
                raise ValueError(f"{file}: no 'semantic' array")
            labels = data["semantic"]
        features = np.ascontiguousarray(np.moveaxis(table[labels], -1, 0))  # [F, h, w]
        tmp = out / f".{file.stem}.tmp.npz"
        np.savez_compressed(tmp, features=features)
        os.replace(tmp, out / f"{file.stem}.npz")
    spec = encoder.spec()
    if weights_reference is not None:
        spec["weights_path"] = weights_reference
    meta = {"reducer": reducer.state_dict(), "text_encoder": spec, "source": "semantics",
            **class_targets(encoder, reducer)}
    torch.save(meta, out / "reducer.pt")
    return {"targets": len(semantic_files), "out": str(out), "feature_dim": int(table.shape[1])}
