"""Per-scene optimisation of the teacher field: photometric L1, LiDAR depth, line of sight, light regularisers.

Losses (weights in distillnerf_train/configs/train/teacher.yaml):
- ``rgb``: L1 between rendered and observed colour on random pixels of every keyframe camera.
- ``depth``: relative L1 between the expected ray distance (sky counted at ``far``) and the LiDAR distance.
- ``line_of_sight`` (Urban Radiance Fields / EmerNeRF style): on LiDAR rays, weight in front of the return
  (farther than ``eps`` before it) is penalised and the weight inside the ``+-eps`` window is pulled to 1; ``eps``
  shrinks during training from ``los_eps_start`` to ``los_eps_end`` metres, never below a few sample spacings.
- ``opacity``: a small L1 on the opacity of camera rays, so directions the field need not explain go to the sky.
- ``smoothness``: total variation of the grids, so space seen by few rays is filled smoothly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .field import FieldConfig, SceneContraction, TeacherField
from .render import RenderConfig, render_rays
from .scene import SceneRays


@dataclass
class LossWeights:
    rgb: float = 1.0
    depth: float = 0.5
    line_of_sight: float = 0.5
    opacity: float = 1e-3
    smoothness: float = 1e-2


@dataclass
class OptimConfig:
    steps: int = 3000
    rays_per_step: int = 4096
    lidar_rays_per_step: int = 1024
    lr_grids: float = 3e-2
    lr_mlp: float = 3e-3
    los_eps_start: float = 3.0
    los_eps_end: float = 0.3
    los_eps_samples: float = 1.5  # eps >= this many sample spacings at the LiDAR distance
    seed: int = 0
    losses: LossWeights = field(default_factory=LossWeights)


def line_of_sight_loss(weights: torch.Tensor, t: torch.Tensor, target: torch.Tensor, eps: torch.Tensor,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty-space and near-surface terms for rays with a LiDAR return at ``target`` [R] (window ``eps`` [R])."""
    before = t < (target - eps)[:, None]
    near = (t - target[:, None]).abs() <= eps[:, None]
    empty = (weights * before).sum(dim=1).mean()
    surface = (1.0 - (weights * near).sum(dim=1)).pow(2).mean()
    return empty, surface


class TeacherOptimiser:
    """Builds a field around a scene's trajectory and fits it to the scene's rays."""

    def __init__(self, scene: SceneRays, field_config: FieldConfig, render_config: RenderConfig,
                 optim: OptimConfig, device: str | torch.device = "cpu"):
        self.scene, self.render_config, self.optim = scene, render_config, optim
        self.device = torch.device(device)
        torch.manual_seed(optim.seed)
        contraction = SceneContraction.around(scene.camera_positions, field_config)
        self.field = TeacherField(contraction, field_config).to(self.device)
        grid_params = list(self.field.grids.parameters())
        other = [p for name, p in self.field.named_parameters() if not name.startswith("grids.")]
        self.optimizer = torch.optim.Adam([{"params": grid_params, "lr": optim.lr_grids},
                                           {"params": other, "lr": optim.lr_mlp}], eps=1e-15)
        self.lidar_index = torch.nonzero(scene.lidar_distance > 0).squeeze(1)
        self.generator = torch.Generator().manual_seed(optim.seed)

    def _batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, ...]:
        s = self.scene
        return (s.origins[indices].to(self.device), s.directions[indices].to(self.device),
                s.rgb[indices].to(self.device), s.lidar_distance[indices].to(self.device))

    def _eps(self, step: int, distance: torch.Tensor) -> torch.Tensor:
        o, r = self.optim, self.render_config
        progress = min(1.0, step / max(1, o.steps - 1))
        eps = o.los_eps_start * (o.los_eps_end / o.los_eps_start) ** progress
        spacing = distance * ((r.far / r.near) ** (1.0 / r.samples) - 1.0)
        return torch.maximum(torch.full_like(distance, eps), o.los_eps_samples * spacing)

    def step(self, step: int) -> dict[str, float]:
        o, w = self.optim, self.optim.losses
        total_rays = self.scene.origins.shape[0]
        camera_idx = torch.randint(total_rays, (o.rays_per_step,), generator=self.generator)
        origins, directions, rgb, _ = self._batch(camera_idx)
        out = render_rays(self.field, origins, directions, self.render_config, jitter=True)
        losses = {"rgb": (out["rgb"] - rgb).abs().mean(), "opacity": out["opacity"].mean()}
        if self.lidar_index.numel() and o.lidar_rays_per_step:
            pick = self.lidar_index[torch.randint(self.lidar_index.numel(), (o.lidar_rays_per_step,),
                                                  generator=self.generator)]
            l_origins, l_directions, _, target = self._batch(pick)
            lidar_out = render_rays(self.field, l_origins, l_directions, self.render_config, jitter=True)
            losses["depth"] = ((lidar_out["distance"] - target).abs() / target).mean()
            empty, surface = line_of_sight_loss(lidar_out["weights"], lidar_out["t"], target, self._eps(step, target))
            losses["line_of_sight"] = empty + surface
        losses["smoothness"] = self.field.grid_smoothness()
        total = sum(getattr(w, name) * value for name, value in losses.items())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return {"total": float(total.detach()), **{name: float(value.detach()) for name, value in losses.items()}}

    def fit(self, log: Callable[[int, dict[str, float]], None] | None = None, log_every: int = 100) -> dict:
        start = time.perf_counter()
        self.field.train()
        history = {}
        for step in range(self.optim.steps):
            history = self.step(step)
            if log is not None and (step % log_every == 0 or step == self.optim.steps - 1):
                log(step, history)
        self.field.eval()
        return {"final_losses": history, "seconds": time.perf_counter() - start, "steps": self.optim.steps}
