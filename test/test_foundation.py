"""FeatureReducer (PCA 64 + min-max) and the local-weights-only CLIP text encoder / DINOv2 weight files."""

from __future__ import annotations

import pytest
import torch

from distillnerf.foundation import (FeatureReducer, OpenClipTextEncoder, create_dinov2, prompt,
                                    save_random_dinov2_weights, save_random_open_clip_weights, text_encoder_from_spec)


def low_rank_features(samples=400, dim=96, rank=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(dim, rank, generator=g))[0]
    scales = torch.linspace(10.0, 1.0, rank)
    return (torch.randn(samples, rank, generator=g) * scales) @ basis.T + 3.0, basis


def test_reducer_finds_the_principal_subspace_and_scales_to_unit_range():
    x, _ = low_rank_features()
    reducer = FeatureReducer(64).fit(x)
    y = reducer.reduce(x)
    assert y.shape == (400, 64)
    assert torch.allclose(y.min(dim=0).values, torch.zeros(64), atol=1e-5)
    assert torch.allclose(y.max(dim=0).values, torch.ones(64), atol=1e-5)
    comps = reducer.components
    assert torch.allclose(comps.T @ comps, torch.eye(64), atol=1e-4)
    # The data has rank 64 around its mean: the PCA projection loses nothing.
    centred = x - x.mean(0)
    assert torch.allclose(reducer.project(x) @ comps.T, centred, atol=1e-3)
    # The leading axis agrees with an exact SVD's (up to sign, which the reducer fixes deterministically).
    exact = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    assert abs(float(exact @ comps[:, 0])) > 0.999


def test_reducer_is_deterministic_and_round_trips_through_its_state_dict():
    x, _ = low_rank_features(seed=1)
    a, b = FeatureReducer().fit(x), FeatureReducer().fit(x)
    assert torch.equal(a.reduce(x), b.reduce(x))
    restored = FeatureReducer.from_state_dict(a.state_dict())
    probe = torch.randn(2, 5, 96)
    assert torch.allclose(restored.reduce(probe), a.reduce(probe))
    assert restored.reduce(probe).shape == (2, 5, 64)


def test_a_component_the_features_do_not_span_reduces_to_a_constant_on_any_thread_count():
    # 64 words centred have rank 63, as the semantic vocabulary does: the 64th component is rounding noise
    words = torch.randn(64, 96, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()
    try:
        fits = []
        for count in (1, 2):
            torch.set_num_threads(count)
            fits.append(FeatureReducer(64).fit(words))
    finally:
        torch.set_num_threads(threads)
    one, two = fits
    for key in ("mean", "components", "minimum", "maximum"):
        assert torch.equal(getattr(one, key), getattr(two, key)), key
    reduced = one.reduce(torch.cat([words, torch.randn(5, 96)]))
    assert torch.equal(reduced[:, 63], torch.full((69,), 0.5))
    assert torch.all(one.components[:, 63] == 0)
    # the 63 spanned components still scale the words to the full unit range
    assert torch.allclose(reduced[:64, :63].min(0).values, torch.zeros(63), atol=1e-5)
    assert torch.allclose(reduced[:64, :63].max(0).values, torch.ones(63), atol=1e-5)


def test_reducer_errors_are_clear():
    with pytest.raises(RuntimeError, match="not fitted"):
        FeatureReducer().reduce(torch.zeros(3, 96))
    with pytest.raises(ValueError, match="at least 64"):
        FeatureReducer().fit(torch.randn(10, 96))
    reducer = FeatureReducer().fit(low_rank_features()[0])
    with pytest.raises(ValueError, match="dimension 96"):
        reducer.reduce(torch.zeros(3, 50))


def test_prompt_is_the_papers():
    assert prompt("traffic cone") == "a photo of a traffic cone"


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    return save_random_open_clip_weights("clip_tiny", tmp_path_factory.mktemp("clip") / "clip_tiny.pt", seed=0)


def test_random_clip_weights_are_an_upstream_open_clip_file(clip_file):
    import open_clip

    state = torch.load(clip_file, map_location="cpu", weights_only=True)
    assert "visual.conv1.weight" in state and "token_embedding.weight" in state and "text_projection" in state
    model = open_clip.create_model("clip_tiny", pretrained=str(clip_file))  # the upstream loading path
    assert torch.equal(model.state_dict()["text_projection"], state["text_projection"])


def test_text_encoder_loads_the_file_and_rebuilds_from_its_spec(clip_file, tmp_path):
    encoder = OpenClipTextEncoder("clip_tiny", clip_file)
    embeddings = encoder.encode_queries(["car", "tree", "pedestrian"])
    assert embeddings.shape == (3, 96) and embeddings.dtype == torch.float32
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.equal(embeddings, encoder.encode([prompt(q) for q in ["car", "tree", "pedestrian"]]))
    assert not torch.allclose(embeddings[0], embeddings[1])
    rebuilt = text_encoder_from_spec(encoder.spec())
    assert torch.allclose(rebuilt.encode(["a photo of a car"]), embeddings[:1], atol=1e-6)
    # Other weights give other embeddings: the file is really what is loaded.
    other = OpenClipTextEncoder("clip_tiny", save_random_open_clip_weights("clip_tiny", tmp_path / "b.pt", seed=1))
    assert not torch.allclose(other.encode(["a photo of a car"]), embeddings[:1])


def test_text_encoder_needs_a_local_file_and_a_known_architecture(tmp_path):
    with pytest.raises(FileNotFoundError, match="local"):
        OpenClipTextEncoder("clip_tiny", tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="unknown CLIP model"):
        OpenClipTextEncoder("no-such-clip", tmp_path / "missing.pt")


def test_random_dinov2_weights_are_a_timm_state_dict(tmp_path):
    import timm

    path = save_random_dinov2_weights("dinov2_tiny", tmp_path / "dino.pth", seed=3)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, depth=2, embed_dim=96, num_heads=2)
    model.load_state_dict(state)  # strict: the upstream timm layout
    loaded = create_dinov2("dinov2_tiny", path)
    assert torch.equal(loaded.state_dict()["cls_token"], state["cls_token"])
