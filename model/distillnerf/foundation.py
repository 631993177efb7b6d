"""Foundation-model features: the PCA reducer shared by targets and queries, and the CLIP text encoder.

DistillNeRF distils dense CLIP (and DINOv2) features reduced to 64 dimensions. The *same* reduction must be
applied to CLIP text embeddings at query time, so the reducer lives here, in the ROS-free model library, and is
stored in the model checkpoint (extras ``'reducer'``) next to a spec of the text encoder (extras
``'text_encoder'``). Weights are only ever read from local files: a user supplies the upstream CLIP file; tests
use seeded random weights written in the same upstream format.

Architectures are either upstream names (``open_clip.list_models()``, timm names) or small project configs in
``distillnerf/configs/foundation/<name>.yaml`` (keys ``open_clip`` = an open_clip model config, or ``timm`` = ``{model,
kwargs}``), which keep tests and demos light.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FEATURE_DIM = 64
CLIP_PROMPT = "a photo of a {}"


def prompt(query: str) -> str:
    """The CLIP prompt used for every open-vocabulary query (as in the paper)."""
    return CLIP_PROMPT.format(query)


# ----------------------------------------------------------------------------------------------- PCA reducer
class FeatureReducer:
    """PCA to ``dim`` dimensions on centred features, then per-dimension min-max scaling to [0, 1].

    Fitted once over a dataset's features (``torch.pca_lowrank``); afterwards ``reduce`` maps any feature of the
    same space (image patches, text embeddings) into the 64-d target space. Values outside the fitting set may
    fall slightly outside [0, 1]; nothing is clamped, so cosine similarities stay faithful.

    A component the features do not span (64 vocabulary words centred have rank 63) holds only rounding noise,
    which min-max scaling would blow up to the full [0, 1] range, and differently for every thread count. Such a
    component (span below ``DEGENERATE_SPAN`` of the largest) is dropped: it reduces everything to a constant 0.5.
    The fit itself runs on one thread, so the same features give the same reducer, bit for bit, on any machine
    setting (targets of different runs can then be checked for equality).
    """

    DEGENERATE_SPAN = 1e-4

    def __init__(self, dim: int = FEATURE_DIM):
        self.dim = int(dim)
        self.mean: torch.Tensor | None = None  # [D]
        self.components: torch.Tensor | None = None  # [D, dim]
        self.minimum: torch.Tensor | None = None  # [dim]
        self.maximum: torch.Tensor | None = None  # [dim]

    @property
    def fitted(self) -> bool:
        return self.components is not None

    @property
    def input_dim(self) -> int:
        self._require_fitted()
        return int(self.components.shape[0])

    def fit(self, features: torch.Tensor, seed: int = 0, niter: int = 4) -> "FeatureReducer":
        """Fit on ``features`` [M, D] (M >= dim, D >= dim); deterministic for a given seed."""
        x = torch.as_tensor(features).detach().to(torch.float32)
        if x.ndim != 2:
            raise ValueError(f"fit expects features [M, D], got shape {tuple(x.shape)}")
        m, d = x.shape
        if m < self.dim or d < self.dim:
            raise ValueError(f"PCA to {self.dim} dimensions needs at least {self.dim} samples and input dimensions, "
                             f"got {m} samples of dimension {d}")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            mean = x.mean(dim=0)
            centred = x - mean
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                _, _, v = torch.pca_lowrank(centred, q=self.dim, center=False, niter=niter)
            # PCA axes have no sign; fix it so that refits give the same targets.
            largest = v.abs().argmax(dim=0)
            signs = torch.sign(v[largest, torch.arange(self.dim)])
            signs[signs == 0] = 1
            v = v * signs
            projected = centred @ v
        finally:
            torch.set_num_threads(threads)
        minimum, maximum = projected.min(dim=0).values, projected.max(dim=0).values
        degenerate = (maximum - minimum) <= self.DEGENERATE_SPAN * (maximum - minimum).max()
        v[:, degenerate] = 0.0
        minimum[degenerate], maximum[degenerate] = -0.5, 0.5
        self.mean, self.components = mean, v.contiguous()
        self.minimum, self.maximum = minimum, maximum
        return self

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """PCA projection only (no scaling): [..., D] -> [..., dim]."""
        self._require_fitted()
        x = torch.as_tensor(x)
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"reducer expects features of dimension {self.input_dim}, got {x.shape[-1]}")
        mean, comps = self.mean.to(x.device, torch.float32), self.components.to(x.device, torch.float32)
        return (x.to(torch.float32) - mean) @ comps

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., dim] in the min-max scaled PCA space."""
        projected = self.project(x)
        low = self.minimum.to(projected.device)
        span = (self.maximum.to(projected.device) - low).clamp_min(1e-8)
        return (projected - low) / span

    def state_dict(self) -> dict[str, Any]:
        self._require_fitted()
        return {"dim": self.dim, "mean": self.mean.clone(), "components": self.components.clone(),
                "minimum": self.minimum.clone(), "maximum": self.maximum.clone()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "FeatureReducer":
        reducer = cls(int(state["dim"]))
        for key in ("mean", "components", "minimum", "maximum"):
            setattr(reducer, key, torch.as_tensor(state[key]).to(torch.float32))
        if reducer.components.shape != (reducer.mean.shape[0], reducer.dim):
            raise ValueError(f"inconsistent reducer state: components {tuple(reducer.components.shape)}, "
                             f"mean {tuple(reducer.mean.shape)}, dim {reducer.dim}")
        return reducer

    def _require_fitted(self) -> None:
        if self.components is None:
            raise RuntimeError("FeatureReducer is not fitted: call fit(features) or load a state dict")


# ----------------------------------------------------------------------------------------- architectures
def foundation_config(name: str) -> dict[str, Any] | None:
    """The project's config for ``name`` (distillnerf/configs/foundation/<name>.yaml), or None if there is none."""
    from distillnerf.config_files import load_yaml

    try:
        return load_yaml(name, "foundation")
    except FileNotFoundError:
        return None


_registered_open_clip: dict[str, str] = {}
_config_folder: tempfile.TemporaryDirectory | None = None


def register_open_clip_config(model_name: str, model_cfg: dict[str, Any]) -> None:
    """Make ``model_name`` known to open_clip with ``model_cfg`` (idempotent, same config only)."""
    import open_clip

    text = json.dumps(model_cfg, sort_keys=True)
    if _registered_open_clip.get(model_name) == text:
        return
    global _config_folder
    if _config_folder is None:  # one folder per process, removed at exit
        _config_folder = tempfile.TemporaryDirectory(prefix="distillnerf_open_clip_")
    file = Path(_config_folder.name) / f"{model_name}.json"
    file.write_text(text, encoding="utf-8")
    open_clip.add_model_config(file)
    _registered_open_clip[model_name] = text


def open_clip_model_cfg(model_name: str) -> dict[str, Any] | None:
    """Resolve ``model_name``: None for an upstream open_clip name, else the project's config (registered)."""
    import open_clip

    project = foundation_config(model_name)
    if project is not None and "open_clip" in project:
        register_open_clip_config(model_name, project["open_clip"])
        return project["open_clip"]
    if model_name in open_clip.list_models():
        return None
    raise ValueError(f"unknown CLIP model {model_name!r}: neither an open_clip model nor "
                     f"distillnerf/configs/foundation/{model_name}.yaml")


def create_open_clip(model_name: str, weights_path: str | os.PathLike | None, device: str | torch.device = "cpu",
                     model_cfg: dict[str, Any] | None = None) -> torch.nn.Module:
    """An open_clip model in eval mode with weights from a local file only (None = random init)."""
    import open_clip

    if model_cfg is not None:
        register_open_clip_config(model_name, model_cfg)
    else:
        open_clip_model_cfg(model_name)
    if weights_path is not None and not Path(weights_path).is_file():
        raise FileNotFoundError(f"CLIP weights file not found: {weights_path} (weights are only read from local files)")
    model = open_clip.create_model(model_name, pretrained=str(weights_path) if weights_path else None,
                                   pretrained_text=False, device=device)
    return model.eval()


def create_dinov2(name: str, weights_path: str | os.PathLike | None, device: str | torch.device = "cpu"):
    """A timm DINOv2 ViT (dynamic image size) with weights from a local timm state dict (None = random init)."""
    import timm

    project = foundation_config(name)
    if project is not None and "timm" in project:
        arch, kwargs = project["timm"]["model"], dict(project["timm"].get("kwargs", {}))
    else:
        arch, kwargs = name, {}
    model = timm.create_model(arch, pretrained=False, dynamic_img_size=True, **kwargs)
    if weights_path is not None:
        if not Path(weights_path).is_file():
            raise FileNotFoundError(f"DINOv2 weights file not found: {weights_path}")
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    return model.to(device).eval()


def _save_seeded_state_dict(build, path: str | os.PathLike, seed: int) -> Path:
    """Build a randomly initialised model under ``seed`` (without touching the caller's RNG) and save its state dict."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def save_random_open_clip_weights(model_name: str, path: str | os.PathLike, seed: int = 0) -> Path:
    """Write seeded random CLIP weights as an upstream open_clip state dict (loadable with ``pretrained=path``)."""
    return _save_seeded_state_dict(lambda: create_open_clip(model_name, None), path, seed)


def save_random_dinov2_weights(name: str, path: str | os.PathLike, seed: int = 0) -> Path:
    """Write seeded random DINOv2 weights as a timm state dict."""
    return _save_seeded_state_dict(lambda: create_dinov2(name, None), path, seed)


# ------------------------------------------------------------------------------------------ text encoder
class OpenClipTextEncoder:
    """CLIP text tower from a local open_clip weight file; embeddings are L2-normalised (same as image features)."""

    def __init__(self, model_name: str, weights_path: str | os.PathLike, device: str | torch.device = "cpu",
                 model_cfg: dict[str, Any] | None = None):
        import open_clip

        self.model_name = model_name
        self.weights_path = str(weights_path)
        self.device = torch.device(device)
        self.model_cfg = model_cfg if model_cfg is not None else open_clip_model_cfg(model_name)
        self.model = create_open_clip(model_name, weights_path, self.device, self.model_cfg)
        self.tokenizer = open_clip.get_tokenizer(model_name)

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """Embed raw texts (apply ``prompt`` yourself for queries): [K, D] float32, unit length."""
        if isinstance(texts, str):
            raise TypeError("encode expects a list of strings")
        tokens = self.tokenizer(list(texts)).to(self.device)
        embedding = self.model.encode_text(tokens).to(torch.float32)
        return torch.nn.functional.normalize(embedding, dim=-1)

    def encode_queries(self, queries: list[str]) -> torch.Tensor:
        """Embed queries with the paper's prompt "a photo of a {q}"."""
        return self.encode([prompt(q) for q in queries])

    def spec(self) -> dict[str, Any]:
        """What ``text_encoder_from_spec`` needs to rebuild this encoder (stored in checkpoint extras)."""
        return {"kind": "open_clip", "model_name": self.model_name, "weights_path": self.weights_path,
                "model_cfg": self.model_cfg}


def text_encoder_from_spec(spec: dict[str, Any], device: str | torch.device = "cpu",
                           weights_path: str | os.PathLike | None = None) -> OpenClipTextEncoder:
    """Rebuild a text encoder from its spec; ``weights_path`` overrides the stored path (e.g. on another machine)."""
    if spec.get("kind", "open_clip") != "open_clip":
        raise ValueError(f"unknown text encoder kind {spec.get('kind')!r}")
    return OpenClipTextEncoder(spec["model_name"], weights_path or spec["weights_path"], device,
                               model_cfg=spec.get("model_cfg"))
