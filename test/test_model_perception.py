"""The numpy-level facade: documented shapes and dtypes, resizing, devices, semantics and text queries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillnerf.checkpoint import save_checkpoint
from distillnerf.perception import Perception, PerceptionResult, resolve_device
from distillnerf.rig import load_rig


@pytest.fixture(scope="module")
def perception():
    # a low threshold so that random weights give some occupied voxels
    return Perception.from_config("tiny", device="cpu", seed=0, occupancy_threshold=0.05)


@pytest.fixture(scope="module")
def frame():
    rig = load_rig("nuscenes")
    rng = np.random.default_rng(0)
    sizes = [(900, 1600)] * 5 + [(450, 800)]  # any resolution: the last camera is half size
    cams = [c.resized(w, h) for c, (h, w) in zip(rig.cameras, sizes)]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    return images, [c.intrinsics for c in cams], [c.cam_to_ego for c in cams]


@pytest.fixture(scope="module")
def result(perception, frame) -> PerceptionResult:
    return perception.infer(*frame)


def test_properties(perception):
    assert perception.camera_names[1] == "CAM_FRONT" and len(perception.camera_names) == 6
    assert perception.input_size == (64, 36) and perception.render_size == (32, 18)
    assert perception.device == torch.device("cpu")


def test_infer_returns_documented_shapes_and_dtypes(result):
    assert result.depth.shape == (6, 18, 32) and result.depth.dtype == np.float32
    assert result.depth_intrinsics.shape == (6, 3, 3)
    assert result.rgb.shape == (6, 36, 64, 3) and result.rgb.dtype == np.uint8
    for name, dtype in (("occupancy_probability", np.float32), ("occupied", np.bool_), ("semantics", np.uint8),
                        ("camera_visible", np.uint8)):
        array = getattr(result, name)
        assert array.shape == (200, 200, 16) and array.dtype == dtype, name
    m = int(result.occupied.sum())
    assert m > 0
    assert result.voxel_centers.shape == (m, 3) and result.voxel_features.shape == (m, 64)
    assert np.array_equal(result.occupied, result.occupancy_probability > 0.05)
    # without a text encoder occupied voxels are 'others' (0) and the rest free (17)
    assert set(np.unique(result.semantics)) <= {0, 17}
    assert np.array_equal(result.semantics == 0, result.occupied)
    assert set(np.unique(result.camera_visible)) <= {0, 1}
    assert 0 < result.camera_visible.sum() < result.camera_visible.size
    for key in ("encode", "fusion", "voxel_conv", "render", "decode", "total"):
        assert result.timings_ms[key] >= 0.0
    assert result.timings_ms["total"] >= result.timings_ms["encode"]
    assert np.all(result.depth > 0) and np.all(np.isfinite(result.depth))


def test_depth_intrinsics_are_the_render_size_intrinsics(result, frame):
    k = np.asarray(frame[1][5]) * np.array([[32 / 800], [18 / 450], [1.0]])
    assert np.allclose(result.depth_intrinsics[5], k, rtol=1e-5)


def test_dropped_camera_changes_visibility(perception, frame, result):
    dropped = perception.infer(*frame, valid=[True] * 5 + [False])
    assert dropped.camera_visible.sum() < result.camera_visible.sum()
    blind = perception.infer(*frame, valid=[False] * 6)  # every camera dropped: an empty, unseen world
    assert not blind.occupied.any() and not blind.camera_visible.any() and np.all(blind.semantics == 17)
    assert blind.voxel_centers.shape == (0, 3) and blind.depth.shape == (6, 18, 32)


def test_cuda_request_without_gpu_raises():
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(RuntimeError, match="CUDA"):
            resolve_device("cuda")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


class KeywordEncoder:
    """A deterministic stand-in text encoder: a fixed random vector per word (the real one is OpenCLIP)."""

    def __init__(self, dim=32):
        self.dim = dim
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        out = []
        for text in texts:
            seed = sum(map(ord, text.split()[-1]))
            out.append(np.random.default_rng(seed).standard_normal(self.dim))
        return np.stack(out).astype(np.float32)


class ProjectionReducer:
    def __init__(self, dim=32, out=64):
        self.matrix = np.random.default_rng(1).standard_normal((dim, out)).astype(np.float32)

    def reduce(self, x):
        return np.asarray(x) @ self.matrix


def test_text_queries_and_semantics(frame):
    p = Perception.from_config("tiny", device="cpu", seed=0, occupancy_threshold=0.05)
    with pytest.raises(RuntimeError, match="text encoder"):
        p.query("car")
    encoder = KeywordEncoder()
    p.set_text_encoder(encoder, ProjectionReducer())
    result = p.infer(*frame)
    assert encoder.calls and len(encoder.calls[0]) == 17 and encoder.calls[0][4] == "a photo of a car"
    assert set(np.unique(result.semantics[result.occupied])) <= set(range(17))
    assert np.all(result.semantics[~result.occupied] == 17)
    points, similarity = p.query("car")
    assert points.shape == (int(result.occupied.sum()), 3) and similarity.shape == (points.shape[0],)
    assert points.dtype == similarity.dtype == np.float32
    assert np.all(np.abs(similarity) <= 1.0 + 1e-5)
    calls = len(encoder.calls)
    p.query("car")
    assert len(encoder.calls) == calls  # cached per text


def test_class_score_offsets_shift_the_semantic_labels(frame):
    plain = Perception.from_config("tiny", device="cpu", seed=0, occupancy_threshold=0.05)
    shifted = Perception.from_config("tiny", device="cpu", seed=0, occupancy_threshold=0.05,
                                     class_score_offsets={"car": 1.0e6})
    for p in (plain, shifted):
        p.set_text_encoder(KeywordEncoder(), ProjectionReducer())
    before, after = plain.infer(*frame), shifted.infer(*frame)
    assert np.array_equal(before.occupied, after.occupied)  # offsets relabel, never re-decide occupancy
    scores = plain.class_scores(before.voxel_features)
    assert scores.shape == (int(before.occupied.sum()), 17)
    assert np.array_equal(before.semantics[before.occupied], scores.argmax(axis=1))
    assert np.all(after.semantics[after.occupied] == 4)  # car everywhere
    assert shifted.class_offsets()[4] == 1.0e6 and float(shifted.class_offsets().abs().sum()) == 1.0e6


def test_from_checkpoint_restores_model(tmp_path, perception, frame, result):
    path = save_checkpoint(tmp_path / "m.pt", perception.model, perception.config, {"step": 3})
    restored = Perception.from_checkpoint(path, device="cpu")
    again = restored.infer(*frame)
    assert np.allclose(again.depth, result.depth, atol=1e-4)
    assert np.array_equal(again.occupied, result.occupied)


def test_real_nuscenes_frame_runs_at_full_resolution(nuscenes_tiny, perception):
    cv2 = pytest.importorskip("cv2")
    rig = load_rig("nuscenes")  # calibration of the log n015-2018-07-24-11-22-45
    images = []
    for name in perception.camera_names:
        files = sorted((nuscenes_tiny / "samples" / name).glob("n015-2018-07-24-11-22-45*.jpg"))
        assert files, f"no {name} image of the rig's log"
        images.append(cv2.cvtColor(cv2.imread(str(files[0])), cv2.COLOR_BGR2RGB))
    assert images[0].shape == (900, 1600, 3)
    cams = [rig.camera(name) for name in perception.camera_names]
    result = perception.infer(images, [c.intrinsics for c in cams], [c.cam_to_ego for c in cams])
    assert result.depth.shape == (6, 18, 32) and np.isfinite(result.depth).all()
    assert result.rgb.shape == (6, 36, 64, 3)


def test_from_checkpoint_restores_reducer_and_text_encoder(tmp_path, perception, frame):
    foundation = pytest.importorskip("distillnerf.foundation")
    weights = foundation.save_random_open_clip_weights("clip_tiny", tmp_path / "clip_tiny.pt")
    encoder = foundation.OpenClipTextEncoder("clip_tiny", weights)
    reducer = foundation.FeatureReducer().fit(torch.randn(200, 96, generator=torch.Generator().manual_seed(0)))
    path = save_checkpoint(tmp_path / "m.pt", perception.model, perception.config,
                           {"reducer": reducer.state_dict(), "text_encoder": encoder.spec()})
    restored = Perception.from_checkpoint(path, device="cpu")
    assert restored.text_encoder is not None and restored.reducer is not None
    result = restored.infer(*frame)
    points, similarity = restored.query("traffic cone")
    assert points.shape[0] == similarity.shape[0] == int(result.occupied.sum())
    assert set(np.unique(result.semantics[result.occupied])) <= set(range(17))


def test_one_occupancy_threshold_decides_occupied_and_semantics(perception, frame):
    loose = perception.infer(*frame, occupancy_threshold=0.01)
    strict = perception.infer(*frame, occupancy_threshold=0.99)
    for result, threshold in ((loose, 0.01), (strict, 0.99)):
        assert np.array_equal(result.occupied, result.occupancy_probability > threshold)
        assert np.all(result.semantics[~result.occupied] == 17) and np.all(result.semantics[result.occupied] < 17)
        assert result.voxel_centers.shape[0] == int(result.occupied.sum())
    assert loose.occupied.sum() > strict.occupied.sum()
