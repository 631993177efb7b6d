"""Masked means for losses: which cameras (or views) of a batch count, broadcast to their pixels."""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def camera_mask(camera_valid: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Per-pixel mask ``like``-shaped ([B,N,...]) from a per-camera (or per-view, [B,N,V]) mask."""
    if camera_valid is None:
        return torch.ones_like(like, dtype=torch.bool)
    extra = like.dim() - camera_valid.dim()
    return camera_valid.reshape(*camera_valid.shape, *([1] * extra)).expand_as(like).bool()
