"""Model configuration: one flat dataclass, loaded from ``distillnerf/configs/model/<name>.yaml``.

Every architecture size lives in the YAML files (``paper``, ``cpu``, ``tiny``); the code holds no sizes of its own
beyond these defaults, which equal the official DistillNeRF numbers. Checkpoints store ``to_dict()`` so a model
always rebuilds with the sizes it was trained with. Files and checkpoints are read by ``dataclass_from_dict`` (types
and choices from the annotations below, unknown keys are errors); ``validate`` adds the rules between fields.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Literal

from distillnerf.config_files import load_yaml
from distillnerf.dataclass_config import check_dataclass, dataclass_from_dict
from distillnerf.occ3d import FREE_LABEL, OCC3D_CLASSES
from distillnerf.rig import NUSCENES_CAMERAS


@dataclass(frozen=True)
class ModelConfig:
    name: str = "paper"
    camera_names: tuple[str, ...] = NUSCENES_CAMERAS

    # Input and render sizes (W x H). Rays are rendered at render size; the decoder returns RGB at input size.
    input_width: int = 228
    input_height: int = 128
    render_width: int = 114
    render_height: int = 64

    # 2D encoder and its FPN to ``feature_stride``.
    backbone: Literal["efficientnet_lite0", "cnn", "dinov2", "openclip"] = "efficientnet_lite0"
    backbone_pretrained: bool = True  # load the backbone's own weights (efficientnet: bundled ImageNet file)
    backbone_weights: str = ""  # local weights file for 'dinov2' / 'openclip' ('' = random init)
    backbone_model: str = ""  # timm / open_clip model name for ViT backbones
    freeze_backbone: bool = False
    cnn_channels: tuple[int, ...] = (16, 32, 64)  # 'cnn' backbone: channels at strides 2, 4, 8
    fpn_channels: int = 64
    feature_stride: Literal[1, 2, 4] = 1  # stride of the depth / lifting resolution w.r.t. the input (1 = full resolution)
    # Arithmetic of the 2D image CNNs (encoder + FPN, the depth heads' convolutions, RGB decoder): 'bfloat16' runs
    # them under bfloat16 autocast
    # where the device computes it natively (CUDA, a CPU with AVX512-BF16 or AMX), float32 elsewhere; their outputs
    # return to float32, so depth, lifting, the field and rendering stay float32.
    cnn_precision: Literal["float32", "bfloat16"] = "float32"

    # Stage-1 depth bins along the ray: linear bins from depth_near, then bins uniform in contracted distance.
    depth_near: float = 0.1
    depth_step: float = 0.2
    depth_linear_bins: int = 250
    depth_contracted_bins: int = 36
    far: float = 120.0
    bin_density_bias: float = -2.0  # added to stage-1 bin density logits before softplus (starts rays thin)

    # Stage-2 candidates: d_k = d + k * clamp(rel * d, min, max), k = first_k .. first_k + K - 1.
    num_candidates: int = 15
    candidate_first_k: int = -8
    candidate_rel_step: float = 0.025
    candidate_min_step: float = 0.05
    candidate_max_step: float = 0.3
    candidate_channels: int = 16  # channels of the 3D conv over the candidate axis

    # Parameterised space (contraction per axis group).
    contraction_radius_xy: float = 50.0
    contraction_radius_z: float = 6.4
    contraction_alpha: float = 0.8

    # Sparse hierarchical voxels: two grids over [-1, 1]^3; each level keeps level_channels + 1 (density logit).
    coarse_resolution: int = 128
    fine_resolution: int = 512
    level_channels: int = 32
    conv_hidden: int = 128
    conv_layers_fine: int = 3
    conv_layers_coarse: int = 4

    # Renderer.
    fine_samples: int = 30
    fine_spacing: float = 0.1
    jitter_samples: bool = True  # jitter stage-1 bin samples within their bin in training
    lookup: Literal["nearest", "trilinear"] = "nearest"
    # Early ray termination: a ray stops once its transmittance is below this (0 = off); it is marched this many
    # samples at a time (0 = all at once), so the samples behind a surface are never looked up.
    early_stop_transmittance: float = 1.0e-4
    march_chunk: int = field(default=24, metadata={"range": (0, None)})
    mlp_hidden: int = 64
    render_feature_dim: int = 64  # rendered channels fed to the decoder (plus normalised depth = 65)
    density_bias: float = -1.0  # added to the density MLP output before softplus

    # Decoder (CNN, render size -> input size).
    decoder_channels: int = 128
    decoder_blocks: int = 3

    # Foundation feature head and FeatureNeRF options.
    feature_head: bool = True
    feature_dim: int = 64
    # 3D descriptors for queries: 'head' (the rendered feature) or 'internal' (the foundation MLP's hidden layer).
    descriptor: Literal["head", "internal"] = "head"
    coordinate_head: bool = False  # regress contracted xyz from the 3D descriptor (coordinate / cycle loss)
    coordinate_samples: int = 4096  # voxel centres per batch used for the coordinate regression output

    # Queries.
    occupancy_threshold: float = 0.5
    # Sub-samples per Occ3D voxel along x, y, z; a voxel's probability is their maximum. More in z catches the thin
    # horizontal surfaces (road, pavement) that the fine level resolves finer than a 0.4 m voxel.
    occupancy_subsamples: tuple[int, int, int] = field(default=(1, 1, 1), metadata={"range": (1, None)})
    visibility_margin: float = 1.0  # metres a voxel may lie behind the rendered depth and still count as visible
    # Free-space carving: a voxel whose centre lies more than this many metres in front of a camera's rendered
    # depth is free whatever its density (that camera sees through it); None = off. Calibrated like the threshold.
    free_space_margin: float | None = field(default=None, metadata={"range": (0.0, None)})
    # Semantic labels: per Occ3D class name, an offset added to that class's score (the negative squared distance
    # of a voxel's feature to the class prototype) before the nearest class is taken; it corrects the class priors
    # the features learned (logit adjustment). Fitted on training keyframes by `distillnerf eval
    # --fit-class-offsets`; {} = the plain nearest class.
    class_score_offsets: dict[str, float] = field(default_factory=dict)

    @property
    def num_bins(self) -> int:
        return self.depth_linear_bins + self.depth_contracted_bins

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.input_width, self.input_height)

    @property
    def render_size(self) -> tuple[int, int]:
        return (self.render_width, self.render_height)

    def validate(self) -> "ModelConfig":
        """Types, choices and ranges of every field (as a config file is read), then the rules between fields."""
        check_dataclass(self, f"model config {self.name!r}")
        problems = []
        for name in ("coarse_resolution", "fine_resolution"):
            value = getattr(self, name)
            if value < 2 or value & (value - 1):  # powers of two quantise both levels consistently
                problems.append(f"{name} must be a power of two, got {value}")
        if self.fine_resolution <= self.coarse_resolution:
            problems.append("fine_resolution must exceed coarse_resolution")
        if self.descriptor == "internal" and not self.feature_head:
            problems.append("descriptor 'internal' needs feature_head")
        if self.num_candidates < 1 or self.num_bins < 2:
            problems.append("need at least 1 candidate and 2 depth bins")
        unknown = sorted(set(self.class_score_offsets) - set(OCC3D_CLASSES[:FREE_LABEL]))
        if unknown:
            problems.append(f"class_score_offsets: unknown classes {', '.join(unknown)} "
                            f"(known: {', '.join(OCC3D_CLASSES[:FREE_LABEL])})")
        if not 0.0 <= self.early_stop_transmittance < 1.0:
            problems.append(f"early_stop_transmittance must be in [0, 1), got {self.early_stop_transmittance}")
        if problems:
            raise ValueError(f"model config {self.name!r}: " + "; ".join(problems))
        return self

    #: Settings read only when weights are loaded or results post-processed: weights trained under one value of
    #: these serve every other value.
    INFERENCE_SETTINGS = ("backbone_pretrained", "occupancy_threshold", "occupancy_subsamples", "visibility_margin",
                          "free_space_margin", "class_score_offsets", "early_stop_transmittance", "march_chunk",
                          "cnn_precision")

    def weights_layout_differences(self, other: "ModelConfig") -> list[str]:
        """The settings, inference settings aside, in which ``other`` differs: weights trained under ``other``
        mean the same under this config when there are none."""
        mine, theirs = self.to_dict(), other.to_dict()
        return sorted(k for k in mine if k not in self.INFERENCE_SETTINGS and mine[k] != theirs[k])

    def same_weights_layout(self, other: "ModelConfig") -> bool:
        return not self.weights_layout_differences(other)

    def to_dict(self) -> dict:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data


def config_from_dict(data: dict, name: str | None = None) -> ModelConfig:
    """A validated config from a mapping (a YAML file, a checkpoint's ``to_dict()``); unknown keys are an error (a
    typo must not silently fall back to a default), lists become tuples."""
    label = name or (data.get("name", "?") if isinstance(data, dict) else "?")
    if name is not None and isinstance(data, dict) and "name" not in data:
        data = {**data, "name": name}
    return dataclass_from_dict(ModelConfig, data, f"model config {label!r}").validate()


def load_model_config(name_or_path: str | os.PathLike = "cpu", **overrides) -> ModelConfig:
    """Load ``distillnerf/configs/model/<name>.yaml`` (or a path); keyword overrides replace single fields (and
    are checked like the file's own values)."""
    data = load_yaml(name_or_path, "model")
    return config_from_dict({**data, **overrides}, name=os.path.splitext(os.path.basename(str(name_or_path)))[0])


__all__ = ["ModelConfig", "config_from_dict", "load_model_config"]
