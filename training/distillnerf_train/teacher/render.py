"""Ray sampling and volume rendering for the teacher field.

Samples are spaced geometrically between ``near`` and ``far`` (constant relative spacing, so near geometry gets
centimetres and the horizon metres), jittered within their interval while training. The sky head fills the
transmittance left after the last sample. Depth images are the *median* surface (where the accumulated weight
crosses half the opacity): unlike the expected depth it does not average a foreground edge with the background.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distillnerf.geometry import distance_to_camera_z, pixel_rays

from .field import TeacherField


@dataclass
class RenderConfig:
    near: float = 0.5
    far: float = 150.0
    samples: int = 128
    chunk: int = 8192  # rays per forward pass when rendering images
    sky_opacity: float = 0.5  # rays whose opacity stays below this are sky/background


def sample_edges(num_rays: int, config: RenderConfig, jitter: bool, device=None) -> torch.Tensor:
    """Interval edges [R, S+1] in metres along each ray, geometric spacing from near to far."""
    u = torch.linspace(0.0, 1.0, config.samples + 1, device=device)
    edges = config.near * (config.far / config.near) ** u
    edges = edges.expand(num_rays, -1)
    if jitter:  # shift every ray's partition by a random fraction of one (relative) step
        shift = torch.rand(num_rays, 1, device=device) - 0.5
        ratio = (config.far / config.near) ** (1.0 / config.samples)
        edges = (edges * ratio ** shift).clamp(config.near, config.far)
    return edges


def render_rays(field: TeacherField, origins: torch.Tensor, directions: torch.Tensor, config: RenderConfig,
                jitter: bool = False) -> dict[str, torch.Tensor]:
    """Volume-render rays [R, 3] (unit directions). Returns rgb [R,3], opacity [R], expected distance [R]
    (sky counted at ``far``), median distance [R], and per-sample ``weights``/``t`` [R,S]."""
    edges = sample_edges(origins.shape[0], config, jitter, origins.device)
    t = 0.5 * (edges[:, 1:] + edges[:, :-1])
    delta = edges[:, 1:] - edges[:, :-1]
    points = origins[:, None, :] + directions[:, None, :] * t[..., None]
    density, rgb = field(points)
    alpha = 1.0 - torch.exp(-density * delta)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], dim=1), dim=1)
    weights = alpha * transmittance[:, :-1]
    opacity = weights.sum(dim=1)
    background = 1.0 - opacity
    colour = (weights[..., None] * rgb).sum(dim=1) + background[:, None] * field.sky_rgb(directions)
    expected = (weights * t).sum(dim=1) + background * config.far
    cumulative = torch.cumsum(weights, dim=1)
    index = torch.searchsorted(cumulative.detach(), 0.5 * opacity.detach()[:, None]).clamp_max(t.shape[1] - 1)
    median = t.gather(1, index).squeeze(1)
    return {"rgb": colour, "opacity": opacity, "distance": expected, "median_distance": median,
            "weights": weights, "t": t}


@torch.no_grad()
def render_image(field: TeacherField, intrinsics: torch.Tensor, cam_to_world: torch.Tensor, width: int, height: int,
                 config: RenderConfig) -> dict[str, torch.Tensor]:
    """RGB [H,W,3] in [0,1], depth [H,W] (camera z, 0 on sky) and sky [H,W] bool of one pinhole camera."""
    origins, directions, z_per_distance = pixel_rays(intrinsics.float(), cam_to_world.float(), height, width)
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
    parts: dict[str, list[torch.Tensor]] = {"rgb": [], "opacity": [], "median_distance": []}
    for start in range(0, origins.shape[0], config.chunk):
        out = render_rays(field, origins[start:start + config.chunk], directions[start:start + config.chunk], config)
        for key in parts:
            parts[key].append(out[key])
    rgb = torch.cat(parts["rgb"]).view(height, width, 3).clamp(0, 1)
    opacity = torch.cat(parts["opacity"]).view(height, width)
    sky = opacity < config.sky_opacity
    depth = distance_to_camera_z(torch.cat(parts["median_distance"]).view(height, width), z_per_distance)
    return {"rgb": rgb, "depth": torch.where(sky, torch.zeros_like(depth), depth), "sky": sky, "opacity": opacity}
