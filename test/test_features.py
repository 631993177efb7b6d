"""Dense CLIP (MaskCLIP-style) and DINOv2 feature targets and the ``distillnerf features`` command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillnerf.foundation import (FeatureReducer, create_dinov2, create_open_clip, save_random_dinov2_weights,
                                    save_random_open_clip_weights, text_encoder_from_spec)
from distillnerf_train.features.extractors import DinoV2Extractor, MaskClipExtractor, interpolate_positional_embedding


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    return (save_random_open_clip_weights("clip_tiny", folder / "clip.pt", seed=0),
            save_random_dinov2_weights("dinov2_tiny", folder / "dino.pth", seed=0))


def test_maskclip_features_are_the_last_blocks_values_in_the_joint_space(weights):
    model = create_open_clip("clip_tiny", weights[0])
    extractor = MaskClipExtractor(model)
    images = torch.rand(2, 3, 64, 64)  # the native 4x4 grid: no positional interpolation involved
    dense = extractor(images)
    assert dense.shape == (2, 96, 4, 4)
    assert torch.allclose(dense.norm(dim=1), torch.ones(2, 4, 4), atol=1e-5)
    # Independent path: open_clip's own forward up to the last block, then its attention restricted to
    # self-attention (each token sees only itself), which leaves exactly out_proj(value).
    visual, captured = model.visual, {}
    last = visual.transformer.resblocks[-1]
    handle = last.register_forward_pre_hook(lambda module, args: captured.setdefault("x", args[0]))
    mean = torch.tensor(extractor.mean).view(1, 3, 1, 1)
    std = torch.tensor(extractor.std).view(1, 3, 1, 1)
    with torch.no_grad():
        model.encode_image((images - mean) / std)
        handle.remove()
        x = captured["x"]
        tokens = x.shape[1]
        only_self = torch.full((tokens, tokens), float("-inf"))
        only_self.fill_diagonal_(0.0)
        y = last.ln_1(x)
        values = last.attn(y, y, y, need_weights=False, attn_mask=only_self)[0]
        expected = visual.ln_post(values[:, 1:]) @ visual.proj
    expected = torch.nn.functional.normalize(expected, dim=-1).reshape(2, 4, 4, 96).permute(0, 3, 1, 2)
    assert torch.allclose(dense, expected, atol=1e-5)


def test_maskclip_handles_other_image_sizes(weights):
    extractor = MaskClipExtractor(create_open_clip("clip_tiny", weights[0]))
    assert extractor(torch.rand(1, 3, 40, 100)).shape == (1, 96, 2, 6)  # cropped to whole patches


def test_positional_embedding_resampling():
    pos = torch.randn(1 + 4 * 4, 8)
    assert torch.equal(interpolate_positional_embedding(pos, (4, 4), (4, 4)), pos)
    resampled = interpolate_positional_embedding(pos, (4, 4), (3, 7))
    assert resampled.shape == (1 + 21, 8) and torch.equal(resampled[0], pos[0])
    constant = torch.ones(17, 8)
    assert torch.allclose(interpolate_positional_embedding(constant, (4, 4), (6, 2)), torch.ones(13, 8), atol=1e-5)


def test_dinov2_patch_features(weights):
    extractor = DinoV2Extractor(create_dinov2("dinov2_tiny", weights[1]))
    dense = extractor(torch.rand(2, 3, 42, 70))
    assert dense.shape == (2, 96, 3, 5)
    assert torch.allclose(dense.norm(dim=1), torch.ones(2, 3, 5), atol=1e-5)


def test_features_command_writes_targets_the_loader_reads(weights, nuscenes_tiny, tmp_path):
    from distillnerf.cli import main
    from distillnerf_train.data import DataConfig, NuScenesKeyframes
    from distillnerf_train.features.pipeline import load_reducer_file

    out = tmp_path / "features"
    code = main(["features", "--data", str(nuscenes_tiny), "--version", "v1.0-tiny", "--clip-model", "clip_tiny",
                 "--clip-weights", str(weights[0]), "--dino-model", "dinov2_tiny", "--dino-weights", str(weights[1]),
                 "--size", "112x56", "--out", str(out)])
    assert code == 0
    files = sorted(p for p in out.glob("*.npz"))
    assert len(files) == 12  # 2 keyframes x 6 cameras
    stack = []
    for file in files:
        with np.load(file) as arrays:
            assert arrays["features"].shape == (64, 3, 7) and arrays["features"].dtype == np.float16
            assert np.array_equal(arrays["features"], arrays["clip_features"])
            assert arrays["dino_features"].shape == (64, 4, 8)
            stack.append(arrays["features"].astype(np.float32))
    every = np.stack(stack).transpose(1, 0, 2, 3).reshape(64, -1)
    meta = load_reducer_file(out / "reducer.pt")
    reducer = FeatureReducer.from_state_dict(meta["reducer"])
    # The reducer was fitted on every patch of this small set: each dimension the patches span covers exactly
    # [0, 1]; one they do not span (64-d embeddings centred have rank 63 at most) is a constant 0.5.
    spanned = (reducer.components.abs().sum(0) > 0).numpy()
    assert spanned.sum() >= 63
    assert np.allclose(every[spanned].min(axis=1), 0.0, atol=1e-3)
    assert np.allclose(every[spanned].max(axis=1), 1.0, atol=1e-3)
    assert np.all(every[~spanned] == 0.5)
    encoder = text_encoder_from_spec(meta["text_encoder"])
    assert reducer.reduce(encoder.encode_queries(["car"])).shape == (1, 64)
    assert FeatureReducer.from_state_dict(meta["dino_reducer"]).dim == 64
    dataset = NuScenesKeyframes(DataConfig(dataroot=str(nuscenes_tiny), version="v1.0-tiny", features_dir=str(out),
                                           input_size=(56, 32), render_size=(28, 16), occupancy=False))
    item = dataset[0]
    assert bool(item["features_valid"].all()) and item["features"].shape == (6, 64, 16, 28)


def test_features_command_rejects_missing_weights(nuscenes_tiny, tmp_path, capsys):
    from distillnerf.cli import main

    code = main(["features", "--data", str(nuscenes_tiny), "--version", "v1.0-tiny", "--clip-model", "clip_tiny",
                 "--clip-weights", str(tmp_path / "none.pt")])
    assert code == 2 and "not a file" in capsys.readouterr().err
