"""Dense per-patch features from foundation models: MaskCLIP-style CLIP and DINOv2 patch tokens.

CLIP's image embedding comes from attention pooling over the class token, which gives one vector per image. MaskCLIP
(Zhou et al., 2022) observed that the *value* embedding of the last attention block, projected with the same
output layers, lands each patch in the joint image-text space. We take exactly that: the last block's value
projection and output projection (no query-key attention, no residual, no MLP), then ``ln_post`` and ``proj``.
Both extractors return unit-length features [B, D, h, w] so that the PCA reducer sees image patches and text
embeddings on the same sphere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _normalise_images(images: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def _crop_to_patches(images: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    h, w = images.shape[-2:]
    return images[..., : h - h % patch[0], : w - w % patch[1]]


def interpolate_positional_embedding(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Resample a ViT's learned [1 + gh*gw, C] positional embedding (class token first) to another grid."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    cls, patches = pos[:1], pos[1:]
    channels = patches.shape[-1]
    grid = patches.reshape(1, old_grid[0], old_grid[1], channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(-1, channels)], dim=0)


class MaskClipExtractor(torch.nn.Module):
    """Dense CLIP features of an open_clip ViT, MaskCLIP-style; input RGB in [0, 1], any size."""

    def __init__(self, clip_model: torch.nn.Module):
        super().__init__()
        visual = clip_model.visual
        for needed in ("conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer", "ln_post", "proj"):
            if not hasattr(visual, needed) or getattr(visual, needed) is None:
                raise NotImplementedError(f"MaskCLIP features need an open_clip VisionTransformer (missing {needed})")
        if getattr(visual, "attn_pool", None) is not None:
            raise NotImplementedError("CLIP towers with attentional pooling are not supported")
        last_attention = visual.transformer.resblocks[-1].attn
        if not hasattr(last_attention, "in_proj_weight"):
            raise NotImplementedError("the last attention block has no packed in-projection to read the values from")
        self.visual = visual
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        self.mean = tuple(cfg.get("mean", OPENAI_DATASET_MEAN))
        self.std = tuple(cfg.get("std", OPENAI_DATASET_STD))
        self.patch = tuple(visual.conv1.kernel_size)

    @property
    def dim(self) -> int:
        return int(self.visual.proj.shape[1])

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.visual
        x = _normalise_images(_crop_to_patches(images, self.patch), self.mean, self.std)
        x = visual.conv1(x.to(visual.conv1.weight.dtype))
        batch, channels, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(batch, 1, -1)
        x = torch.cat([cls, x], dim=1)
        pos = interpolate_positional_embedding(visual.positional_embedding, tuple(visual.grid_size), (gh, gw))
        x = visual.ln_pre(x + pos.to(x.dtype))
        blocks = visual.transformer.resblocks
        batch_first = getattr(visual.transformer, "batch_first", True)
        x = x if batch_first else x.transpose(0, 1)
        for block in blocks[:-1]:
            x = block(x)
        x = x if batch_first else x.transpose(0, 1)
        last = blocks[-1]
        y = last.ln_1(x)
        value = F.linear(y, last.attn.in_proj_weight[2 * channels:], last.attn.in_proj_bias[2 * channels:])
        value = last.attn.out_proj(value)
        dense = visual.ln_post(value[:, 1:]) @ visual.proj
        dense = dense.reshape(batch, gh, gw, -1).permute(0, 3, 1, 2).to(torch.float32)
        return F.normalize(dense, dim=1)


class DinoV2Extractor(torch.nn.Module):
    """DINOv2 patch tokens (after the final norm) of a timm ViT built with ``dynamic_img_size=True``."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, timm_model: torch.nn.Module):
        super().__init__()
        self.model = timm_model
        self.patch = tuple(timm_model.patch_embed.patch_size)

    @property
    def dim(self) -> int:
        return int(self.model.num_features)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = _normalise_images(_crop_to_patches(images, self.patch), self.MEAN, self.STD)
        gh, gw = x.shape[-2] // self.patch[0], x.shape[-1] // self.patch[1]
        tokens = self.model.forward_features(x)[:, self.model.num_prefix_tokens:]
        dense = tokens.reshape(x.shape[0], gh, gw, -1).permute(0, 3, 1, 2).to(torch.float32)
        return F.normalize(dense, dim=1)
