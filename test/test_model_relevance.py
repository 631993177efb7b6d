"""Query relevance: the query against a vocabulary of alternatives, softmax with a temperature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillnerf.perception import Perception
from distillnerf.relevance import nearest_class, relevance


def test_relevance_is_high_only_where_the_query_beats_every_alternative():
    query = torch.tensor([1.0, 0.0, 0.0])
    alternatives = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    features = torch.tensor([[0.95, 0.05, 0.0],   # the query's own kind
                             [0.1, 0.9, 0.0],     # an alternative's
                             [0.5, 0.5, 0.0]])    # in between
    r = relevance(features, query, alternatives, temperature=0.1)
    assert r[0] > 0.99 and r[1] < 0.01 and 0.3 < r[2] < 0.7
    assert bool(((r >= 0) & (r <= 1)).all())
    # all-positive features that a cosine would call similar to everything are still told apart
    positive = torch.tensor([[0.9, 0.8, 0.8], [0.8, 0.9, 0.8]])
    shifted = relevance(positive, torch.tensor([0.9, 0.8, 0.8]), torch.tensor([[0.8, 0.9, 0.8]]), 0.01)
    assert shifted[0] > 0.8 and shifted[1] < 0.2
    assert nearest_class(features, torch.cat([query[None], alternatives])).tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="temperature"):
        relevance(features, query, alternatives, 0.0)


class TableEncoder:
    """Text encoder stand-in: a fixed random vector per text (the real one is OpenCLIP's text tower)."""

    def __init__(self, dim=64):
        self.dim, self.calls = dim, []

    def encode(self, texts):
        self.calls.append(list(texts))
        return np.stack([np.random.default_rng(sum(map(ord, t))).random(self.dim) for t in texts]).astype(np.float32)


class Identity:
    def reduce(self, x):
        return np.asarray(x)


def test_perception_query_is_relevance_and_similarity_stays_available():
    p = Perception.from_config("tiny", device="cpu", seed=0, occupancy_threshold=0.05)
    encoder = TableEncoder(p.config.feature_dim)
    p.set_text_encoder(encoder, Identity())
    words, temperature = p.relevance_settings()
    assert "car" in words and "sky" in words and temperature > 0
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (36, 64, 3), dtype=np.uint8) for _ in range(6)]
    from distillnerf.rig import load_rig

    rig = load_rig("nuscenes").resized(64, 36)
    cams = [rig.camera(n) for n in p.camera_names]
    result = p.infer(images, [c.intrinsics for c in cams], [c.cam_to_ego for c in cams])
    assert result.occupied.any()
    points, rel = p.query("car")
    assert rel.shape == (points.shape[0],) and rel.dtype == np.float32
    assert np.all((rel >= 0) & (rel <= 1))
    # the query is never its own alternative: with 'car' among the words, relevance is not capped at one half
    queried = [call for call in encoder.calls if "a photo of a car" in call]
    assert queried
    _, sim = p.similarity("car")
    assert np.all(np.abs(sim) <= 1 + 1e-5) and sim.shape == rel.shape
    # voxel features equal to the 'car' embedding score ~1, equal to 'road' ~0
    car = p._text_embeddings(["car"])[0]
    road = p._text_embeddings(["driveable surface"])[0]
    p._last.voxel_features = torch.stack([car, road]).numpy()
    p._last.voxel_centers = np.zeros((2, 3), np.float32)
    _, two = p.query("car")
    assert two[0] > 0.9 and two[1] < 0.1
