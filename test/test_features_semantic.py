"""Feature targets from exact semantics: the node's text query path recovers the labelled class."""

from __future__ import annotations

import numpy as np
import torch

from distillnerf.foundation import FeatureReducer, OpenClipTextEncoder, prompt, save_random_open_clip_weights
from distillnerf.occupancy import OCC3D_CLASSES
from distillnerf_train.features.semantic import SKY_LABEL, write_semantic_targets


def test_semantic_targets_match_the_query_embedding_of_each_label(tmp_path):
    weights = save_random_open_clip_weights("clip_tiny", tmp_path / "clip.pt", seed=3)
    depth_dir = tmp_path / "data" / "gt" / "depth"
    depth_dir.mkdir(parents=True)
    labels = np.array([[4, 4, 11], [16, SKY_LABEL, 7]], dtype=np.uint8)  # car, road, vegetation, sky, pedestrian
    np.savez(depth_dir / "tok0.npz", depth=np.ones((2, 3), np.float32), semantic=labels)

    summary = write_semantic_targets(tmp_path / "data", "clip_tiny", weights, weights_reference="clip.pt")
    assert summary == {"targets": 1, "out": str(tmp_path / "data" / "features"), "feature_dim": 64}

    features = np.load(tmp_path / "data" / "features" / "tok0.npz")["features"]
    assert features.shape == (64, 2, 3) and features.dtype == np.float16
    meta = torch.load(tmp_path / "data" / "features" / "reducer.pt", weights_only=True)
    assert meta["text_encoder"]["weights_path"] == "clip.pt" and meta["source"] == "semantics"

    # What the node does for a query: same prompt, same reducer; the best class of each pixel is its label.
    encoder = OpenClipTextEncoder("clip_tiny", weights)
    reducer = FeatureReducer.from_state_dict(meta["reducer"])
    names = [n.replace("_", " ") for n in OCC3D_CLASSES[:17]]
    classes = torch.nn.functional.normalize(reducer.reduce(encoder.encode([prompt(n) for n in names])), dim=-1)
    pixels = torch.nn.functional.normalize(torch.from_numpy(features.astype(np.float32)).flatten(1).T, dim=-1)
    best = (pixels @ classes.T).argmax(dim=1).reshape(2, 3).numpy()
    solid = labels != SKY_LABEL
    assert np.array_equal(best[solid], labels[solid])
    # Identical labels give identical targets; different labels differ.
    assert np.array_equal(features[:, 0, 0], features[:, 0, 1])
    assert not np.allclose(features[:, 0, 0], features[:, 0, 2])


def test_from_semantics_needs_exact_semantics(tmp_path):
    import pytest

    weights = save_random_open_clip_weights("clip_tiny", tmp_path / "clip.pt", seed=0)
    with pytest.raises(FileNotFoundError, match="exact"):
        write_semantic_targets(tmp_path, "clip_tiny", weights)
