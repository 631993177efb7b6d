"""Render an already-built field from cameras other than the input ones (teacher virtual views, next keyframe).

The model's forward renders its own input cameras, guided by their stage-1 depth. A new camera has no stage-1
depth, so the fine samples are placed around the source camera's rendered depth at the same pixel: the virtual
views are 1 m away and the next keyframe's cameras a few metres, so this guide is close; the uniform bin
samples still cover the whole ray. Uses the model's own ray, sampling, rendering and decoding functions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distillnerf.geometry import pixel_rays, scale_intrinsics
from distillnerf.model import DistillNeRF
from distillnerf.renderer import ray_samples, render_rays


def render_views(model: DistillNeRF, out: dict, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor) -> dict:
    """Render ``V`` extra cameras per input camera from ``out['field']``.

    ``intrinsics``: [B,N,3,3] or [B,N,V,3,3] at input size; ``cam_to_ego``: [B,N,V,4,4] in the keyframe ego frame.
    Returns ``rgb`` [B,N,V,3,H,W] and ``depth`` [B,N,V,h,w] (camera z).
    """
    c = model.config
    b, n, v = cam_to_ego.shape[:3]
    if intrinsics.dim() == 4:
        intrinsics = intrinsics[:, :, None].expand(b, n, v, 3, 3)
    dtype = out["depth"].dtype
    k_input = intrinsics.reshape(-1, 3, 3).to(dtype)
    poses = cam_to_ego.reshape(-1, 4, 4).to(dtype)
    h, w, height, width = c.render_height, c.render_width, c.input_height, c.input_width
    k_render = scale_intrinsics(k_input, w / width, h / height)
    origins, directions, z_per_distance = pixel_rays(k_render, poses, h, w)
    count = b * n * v
    z_per_distance = z_per_distance.reshape(count, h, w)
    # Guide: the source camera's rendered camera-z depth, as a ray distance of the new camera's pixel.
    guide = out["depth"].detach()[:, :, None].expand(b, n, v, h, w).reshape(count, h, w) / z_per_distance
    edges = model.depth.edges.to(dtype)
    bin_index = (torch.bucketize(guide.reshape(-1), edges) - 1).clamp(0, edges.numel() - 2)
    guide_weights = F.one_hot(bin_index, edges.numel() - 1).to(dtype)
    t = ray_samples(edges, guide_weights, c, jitter=model.training and c.jitter_samples)
    batch = torch.arange(b, device=poses.device).repeat_interleave(n * v * h * w)
    rays = render_rays(model.heads, out["field"], batch, origins.reshape(-1, 3), directions.reshape(-1, 3), t, c.far,
                       ("render",), c.early_stop_transmittance, c.march_chunk)
    depth = rays["distance"].reshape(count, h, w) * z_per_distance
    render = rays["render"].reshape(count, h, w, -1).permute(0, 3, 1, 2)
    rgb = model.decoder(torch.cat([render, (depth / c.far)[:, None]], dim=1))
    return {"rgb": rgb.reshape(b, n, v, 3, height, width), "depth": depth.reshape(b, n, v, h, w)}
