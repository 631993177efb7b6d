"""Numpy-level inference facade: images in, depth / RGB / occupancy / semantics / open-vocabulary queries out.

This is what the ROS node and the demo call. Images may come at any resolution; they are resized to the model's
input size and their intrinsics rescaled here, so callers pass raw camera data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from distillnerf.config import ModelConfig, load_model_config
from distillnerf.geometry import scale_intrinsics
from distillnerf.model import DistillNeRF
from distillnerf.occupancy import (FREE_LABEL, OCC3D_CLASSES, OccGridSpec, occupancy_and_surface, occupied_voxels,
                                  semantic_labels)
from distillnerf.relevance import relevance, scores
from distillnerf.timing import StageTimer
from distillnerf.visibility import GridProjection, surface_offset

log = logging.getLogger(__name__)


class QueryUnavailable(RuntimeError):
    """A text query cannot be answered: no text encoder, or no inference result yet (not a fault of the model)."""


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' = CUDA when available, else CPU; asking for CUDA without one is an error, not a silent fallback."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available (use 'auto' or 'cpu')")
    return device


@dataclass
class PerceptionResult:
    depth: np.ndarray  # [N, h, w] float32 camera z, metres
    depth_intrinsics: np.ndarray  # [N, 3, 3] intrinsics of the depth images
    rgb: np.ndarray  # [N, H, W, 3] uint8
    occupancy_probability: np.ndarray  # [X, Y, Z] float32
    occupied: np.ndarray  # [X, Y, Z] bool
    semantics: np.ndarray  # [X, Y, Z] uint8 Occ3D labels (17 free)
    camera_visible: np.ndarray  # [X, Y, Z] uint8
    # [X, Y, Z] float32: metres the voxel centre lies behind the rendered depth, the least over the cameras that
    # see it (negative: in front of a surface, in space a camera sees through); +inf where no camera looks
    surface_offset: np.ndarray
    voxel_features: np.ndarray  # [M, F] float32 at occupied voxel centres
    voxel_centers: np.ndarray  # [M, 3] float32 ego metres
    timings_ms: dict = field(default_factory=dict)
    features: np.ndarray | None = None  # [N, F, h, w] rendered foundation features (Perception(render_features=True))


class Perception:
    def __init__(self, model: DistillNeRF, config: ModelConfig, device: str | torch.device = "auto",
                 extras: dict | None = None, grid: OccGridSpec = OccGridSpec(), render_features: bool = False):
        self.device = resolve_device(device)
        # Rendered feature images are not needed for voxel semantics or queries (those read the field itself),
        # and skipping them leaves the feature head to the occupied voxels only.
        self.render_features = render_features
        self.model = model.to(self.device).eval()
        self.config = config
        self.grid = grid
        self.extras = dict(extras or {})
        self.text_encoder = None
        self.reducer = None
        self._text_cache: dict[str, torch.Tensor] = {}
        self._class_embeddings: torch.Tensor | None = None
        offsets = config.class_score_offsets  # fixed with the config: built once, not per frame
        self._class_offsets = torch.tensor([offsets.get(name, 0.0) for name in OCC3D_CLASSES[:FREE_LABEL]],
                                           device=self.device)
        self._relevance: tuple[list[str], float] | None = None
        self._last: PerceptionResult | None = None
        # the grid's voxel centres in the cameras: constant while the rig's calibration is
        self._grid_projection = GridProjection(grid.centres(self.device))
        self._restore_text_encoder()

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path, device: str = "auto") -> "Perception":
        from distillnerf.checkpoint import load_checkpoint

        resolved = resolve_device(device)
        model, config, extras = load_checkpoint(path, map_location=resolved)
        spec = extras.get("text_encoder")
        if isinstance(spec, dict) and spec.get("weights_path") and not Path(spec["weights_path"]).is_absolute():
            # A shipped checkpoint names its text-tower weights relative to itself.
            extras = {**extras, "text_encoder": {**spec, "weights_path": str(Path(path).parent / spec["weights_path"])}}
        return cls(model, config, resolved, extras)

    @classmethod
    def from_config(cls, name_or_path: str = "tiny", device: str = "cpu", seed: int = 0, **overrides) -> "Perception":
        """A model with seeded random weights (tests, demos before training)."""
        config = load_model_config(name_or_path, **overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = DistillNeRF(config)
        return cls(model, config, device)

    def _restore_text_encoder(self) -> None:
        """Restore the feature reducer and text encoder from checkpoint extras, when present and importable."""
        if "reducer" not in self.extras:
            return
        try:
            from distillnerf import foundation

            reducer = foundation.FeatureReducer.from_state_dict(self.extras["reducer"])
            spec = self.extras.get("text_encoder")
            encoder = foundation.text_encoder_from_spec(spec, device=self.device) if isinstance(spec, dict) else None
        except (ImportError, OSError, KeyError, ValueError, TypeError) as error:
            # missing module, weights file or spec entry: everything but queries still works
            log.warning("open-vocabulary queries unavailable: %s: %s", type(error).__name__, error)
            return
        if encoder is not None:
            self.set_text_encoder(encoder, reducer)
        else:
            self.reducer = reducer

    # -- properties ---------------------------------------------------------------------------------------------
    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(self.config.camera_names)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.config.input_size

    @property
    def render_size(self) -> tuple[int, int]:
        return self.config.render_size

    # -- inference ----------------------------------------------------------------------------------------------
    def warmup(self, runs: int = 1) -> None:
        """Run the nuScenes rig on blank images (first-call allocations and kernel selection happen here)."""
        from distillnerf.rig import load_rig

        rig = load_rig("nuscenes").resized(*self.input_size)
        cams = [rig.camera(name) for name in rig.camera_names]
        images = [np.zeros((self.input_size[1], self.input_size[0], 3), np.uint8) for _ in cams]
        for _ in range(runs):
            self.infer(images, [c.intrinsics for c in cams], [c.cam_to_ego for c in cams])

    def _prepare(self, images, intrinsics, cam_to_ego, valid):
        width, height = self.input_size
        if not (len(images) == len(intrinsics) == len(cam_to_ego)) or not images:
            raise ValueError(f"need one intrinsics and one cam_to_ego per image (got {len(images)}, "
                             f"{len(intrinsics)}, {len(cam_to_ego)})")
        tensors, ks = [], []
        for image, k in zip(images, intrinsics):
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"images must be HxWx3 RGB arrays, got shape {image.shape}")
            t = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
            if t.shape[-2:] != (height, width):
                t = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
            tensors.append(t[0])
            k = torch.as_tensor(np.asarray(k, dtype=np.float64), dtype=torch.float32)
            ks.append(scale_intrinsics(k, width / image.shape[1], height / image.shape[0]))
        images_t = torch.stack(tensors)[None]
        k_t = torch.stack(ks)[None].to(self.device)
        e_t = torch.as_tensor(np.asarray(cam_to_ego, dtype=np.float32), device=self.device)[None]
        valid_t = None if valid is None else torch.as_tensor(np.asarray(valid, dtype=bool), device=self.device)[None]
        return images_t, k_t, e_t, valid_t

    @torch.inference_mode()
    def infer(self, images, intrinsics, cam_to_ego, valid=None, occupancy_threshold: float | None = None
              ) -> PerceptionResult:
        """``occupancy_threshold``: probability above which a voxel is occupied (default: the model config's); with
        the config's ``free_space_margin``, voxels that far in front of a camera's rendered depth are free. One
        decision makes ``occupied``, the semantic labels and the voxels a query scores."""
        threshold = self.config.occupancy_threshold if occupancy_threshold is None else float(occupancy_threshold)
        timer = StageTimer(self.device)
        with timer.stage("preprocess"):
            images_t, k_t, e_t, valid_t = self._prepare(images, intrinsics, cam_to_ego, valid)
        out = self.model(images_t, k_t, e_t, valid_t, timer=timer, render_features=self.render_features)
        with timer.stage("queries"):
            field = out["field"]
            prob, surface = occupancy_and_surface(self.model, field, self.grid, self.config.occupancy_subsamples,
                                                  threshold)
            prob, surface = prob[0], surface[0]
            valid_cams = valid_t[0] if valid_t is not None else torch.ones(k_t.shape[1], dtype=torch.bool,
                                                                            device=self.device)
            depth = out["depth"][0]
            projection = self._grid_projection(out["render_intrinsics"][0], e_t[0], tuple(depth.shape[-2:]))
            offset = surface_offset(projection, depth, valid_cams).reshape(self.grid.size)
            occupied = occupied_voxels(prob, offset, threshold, self.config.free_space_margin)
            rows = occupied.reshape(-1).nonzero()[:, 0]  # the occupied voxels, found once for every read below
            voxel_centers = self.grid.centres(self.device)[rows]
            if self.config.feature_head and rows.numel():
                # read at the sub-sample that made the voxel occupied, not the centre (which may be empty space)
                voxel_features = self.model.query_features(field, surface.reshape(-1, 3)[rows][None])[0]
            else:
                voxel_features = voxel_centers.new_zeros(rows.numel(), self.config.feature_dim)
            semantics = torch.full(self.grid.size, FREE_LABEL, dtype=torch.uint8, device=self.device)
            class_embeddings = self._class_text_embeddings()
            if class_embeddings is not None and rows.numel():
                semantics.view(-1)[rows] = semantic_labels(voxel_features, class_embeddings,
                                                           torch.ones_like(rows, dtype=torch.bool),
                                                           self.class_offsets())
            else:
                semantics.view(-1)[rows] = 0  # 'others': occupied, class unknown without a text encoder
            visible = offset <= self.config.visibility_margin
            rgb = (out["rgb"][0].permute(0, 2, 3, 1) * 255.0).round().clamp(0, 255).to(torch.uint8)
            results = {
                "depth": out["depth"][0].float(), "depth_intrinsics": out["render_intrinsics"][0].float(),
                "rgb": rgb, "occupancy_probability": prob.float(), "occupied": occupied, "semantics": semantics,
                "camera_visible": visible.to(torch.uint8), "surface_offset": offset.float(),
                "voxel_features": voxel_features.float(), "voxel_centers": voxel_centers.float(),
            }
            if "features" in out:
                results["features"] = out["features"][0].float()
            arrays = {name: value.cpu().numpy() for name, value in results.items()}
        result = PerceptionResult(**arrays, timings_ms=timer.result())
        self._last = result
        return result

    # -- open vocabulary ----------------------------------------------------------------------------------------
    def set_text_encoder(self, encoder, reducer) -> None:
        """Enable semantics and text queries: ``encoder.encode(list[str]) -> [K, D]``, ``reducer.reduce(x)`` to
        the model's feature space (PCA + min-max, as the distilled features)."""
        self.text_encoder, self.reducer = encoder, reducer
        self._text_cache.clear()
        self._class_embeddings = None

    def _text_embeddings(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in texts if t not in self._text_cache]
        if missing:
            if self.text_encoder is None or self.reducer is None:
                raise QueryUnavailable("no text encoder: call set_text_encoder(encoder, reducer) or load a checkpoint "
                                   "whose extras carry 'reducer' and 'text_encoder'")
            from distillnerf.foundation import prompt

            raw = self.text_encoder.encode([prompt(t) for t in missing])
            reduced = self.reducer.reduce(raw)
            reduced = reduced.detach().cpu() if torch.is_tensor(reduced) else torch.from_numpy(np.asarray(reduced))
            # kept in the reduced space the features were distilled into (distances, not cosines, compare them)
            for text, embedding in zip(missing, reduced.float()):
                self._text_cache[text] = embedding.to(self.device)
        return torch.stack([self._text_cache[t] for t in texts])

    def _class_text_embeddings(self) -> torch.Tensor | None:
        if self.text_encoder is None or self.reducer is None:
            return None
        if self._class_embeddings is None:
            names = [name.replace("_", " ") for name in OCC3D_CLASSES[:FREE_LABEL]]
            self._class_embeddings = self._text_embeddings(names)
        return self._class_embeddings

    def class_scores(self, voxel_features: np.ndarray) -> np.ndarray | None:
        """[M, 17] scores of voxel features against the class prototypes, offsets not added (what
        ``class_score_offsets`` are fitted on); None without a text encoder."""
        class_embeddings = self._class_text_embeddings()
        if class_embeddings is None:
            return None
        features = torch.as_tensor(voxel_features, device=self.device)
        return scores(features, class_embeddings).cpu().numpy()

    def class_offsets(self) -> torch.Tensor:
        """[17] the config's ``class_score_offsets`` in Occ3D class order (0 for classes it does not name)."""
        return self._class_offsets

    def _last_voxels(self) -> tuple[np.ndarray, torch.Tensor]:
        if self._last is None:
            raise QueryUnavailable("no inference result yet: call infer() before query()")
        return self._last.voxel_centers.astype(np.float32), torch.as_tensor(self._last.voxel_features,
                                                                             device=self.device)

    def relevance_settings(self) -> tuple[list[str], float]:
        """(alternative texts, temperature) of query relevance, from configs/foundation/semantic_vocabulary.yaml."""
        if self._relevance is None:
            from distillnerf.config_files import load_yaml

            vocabulary = load_yaml("semantic_vocabulary", "foundation")
            names = [name.replace("_", " ") for name in OCC3D_CLASSES[:FREE_LABEL]]
            words = list(dict.fromkeys(names + list(vocabulary.get("relevance_alternatives", []))))
            self._relevance = (words, float(vocabulary.get("relevance_temperature", 0.25)))
        return self._relevance

    def query(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Relevance in [0, 1] of the text for the last result's occupied voxels: (points [M,3], relevance [M]),
        the softmax probability of the text against the class prompts and background words (minus the text
        itself), so a voxel scores high only where the text fits it better than every alternative."""
        embedding = self._text_embeddings([text])[0]
        points, features = self._last_voxels()
        words, temperature = self.relevance_settings()
        key = text.strip().lower().replace("_", " ")
        alternatives = self._text_embeddings([w for w in words if w.lower() != key])
        return points, relevance(features, embedding, alternatives, temperature).float().cpu().numpy()

    def similarity(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Raw cosine similarity of the last result's occupied-voxel features with the text: (points, sim [M])."""
        embedding = self._text_embeddings([text])[0]
        points, features = self._last_voxels()
        sim = F.normalize(features.float(), dim=-1) @ F.normalize(embedding.float(), dim=0)
        return points, sim.cpu().numpy()
