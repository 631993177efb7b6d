"""Evaluation on a small synthetic dataroot (exact depth and Occ3D ground truth, two keyframes for novel view)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from distillnerf.checkpoint import load_checkpoint, save_checkpoint
from distillnerf.cli import main as cli_main
from distillnerf.config import load_model_config
from distillnerf.metrics import OCC3D_CLASSES
from distillnerf.model import DistillNeRF


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    synth = pytest.importorskip("distillnerf_train.synth", reason="the synthetic world is not available")
    root = tmp_path_factory.mktemp("synth")
    synth.generate_dataset(root, scenes=1, frames=2, seed=0, size=(64, 36))
    return root


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = load_model_config("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, DistillNeRF(config), config, {"step": 0})
    return path


def test_render_views_of_the_input_cameras_match_the_forward_render(synth_root):
    from distillnerf_train.data import DataConfig, NuScenesKeyframes
    from distillnerf_train.rendering import render_views

    torch.manual_seed(0)
    config = load_model_config("tiny")
    model = DistillNeRF(config).eval()
    item = NuScenesKeyframes(DataConfig(dataroot=str(synth_root), version="v1.0-synth",
                                        input_size=config.input_size, render_size=config.render_size))[0]
    batch = {k: v[None] for k, v in item.items() if isinstance(v, torch.Tensor)}
    with torch.no_grad():
        out = model(batch["images"], batch["intrinsics"], batch["cam_to_ego"])
        views = render_views(model, out, batch["intrinsics"], batch["cam_to_ego"][:, :, None])
    assert views["rgb"].shape == (1, 6, 1, 3, config.input_height, config.input_width)
    assert views["depth"].shape == (1, 6, 1, config.render_height, config.render_width)
    # same field, same rays; only the fine samples are placed from the rendered (not stage-1) depth
    relative = (views["depth"][:, :, 0] - out["depth"]).abs() / out["depth"]
    assert float(relative.median()) < 0.05


def test_evaluate_reports_every_protocol(synth_root, tiny_checkpoint):
    from distillnerf_train.evaluation import evaluate, format_report

    report = evaluate(tiny_checkpoint, synth_root, "v1.0-synth", device="cpu")
    assert report["samples"] == 2
    assert 0 < report["reconstruction"]["psnr"] < 60 and -1 <= report["reconstruction"]["ssim"] <= 1
    assert report["novel_view"]["samples"] == 1 and math.isfinite(report["novel_view"]["psnr"])
    for key in ("depth_lidar", "depth_dense"):
        assert report[key]["samples"] == 2 and report[key]["abs_rel"] >= 0 and 0 <= report[key]["d1"] <= 1
    occ = report["occupancy"]
    assert occ["samples"] == 2 and 0 <= occ["geometric_iou"] <= 100 and occ["miou"] is None  # no text encoder
    assert {"encode", "fusion", "voxel_conv", "render", "decode", "total"} <= set(report["latency_ms"])
    text = format_report(report)
    assert "novel view" in text and "latency" in text and "IoU" in text


def test_eval_cli(synth_root, tiny_checkpoint, tmp_path, capsys):
    assert cli_main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(synth_root), "--version",
                     "v1.0-synth", "--max-samples", "1", "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 1 and report["novel_view"]["samples"] == 1
    # The threshold sweep scores the deployed probabilities: at the checkpoint's own threshold it is the main IoU.
    own = load_checkpoint(tiny_checkpoint)[1].occupancy_threshold
    assert cli_main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(synth_root), "--version",
                     "v1.0-synth", "--max-samples", "1", "--device", "cpu", "--json",
                     "--occupancy-sweep", f"0.0,{own}"]) == 0
    swept = json.loads(capsys.readouterr().out)
    assert swept["occupancy_sweep"][str(own)] == pytest.approx(swept["occupancy"]["geometric_iou"])
    assert set(swept["occupancy_sweep"]) == {"0.0", str(own)} and swept["occupancy"]["threshold"] == own
    # Free-space carving: off equals the plain threshold; at threshold 0 (every voxel occupied) carving removes
    # the space the cameras see through, which a small random model's IoU always feels.
    assert cli_main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(synth_root), "--version",
                     "v1.0-synth", "--max-samples", "1", "--device", "cpu", "--json",
                     "--occupancy-sweep", f"0.0,{own}", "--free-space-sweep", "0.4,2"]) == 0
    carved = json.loads(capsys.readouterr().out)["free_space_sweep"]
    assert set(carved) == {"0.0", str(own)} and set(carved["0.0"]) == {"off", "0.4", "2.0"}
    for threshold, by_margin in carved.items():
        assert by_margin["off"] == pytest.approx(swept["occupancy_sweep"][threshold])
    assert carved["0.0"]["0.4"] != pytest.approx(carved["0.0"]["off"])  # at threshold 0 everything seen is carved
    with pytest.raises(SystemExit):
        cli_main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(synth_root),
                  "--occupancy-sweep", "0.1,high"])
    assert cli_main(["eval", "--checkpoint", str(tmp_path / "absent.pt"), "--data", str(synth_root)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"junk")
    assert cli_main(["eval", "--checkpoint", str(tmp_path / "bad.pt"), "--data", str(synth_root)]) == 2
    assert "not a readable" in capsys.readouterr().err
    assert cli_main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(synth_root)]) == 2
    assert "v1.0-trainval" in capsys.readouterr().err
    # class offsets are fitted on training keyframes, never on the held-out suite; and they need class prototypes
    assert cli_main(["eval", "--checkpoint", str(tiny_checkpoint), "--suite", "heldout", "--fit-class-offsets"]) == 2
    assert "never on a held-out suite" in capsys.readouterr().err
    assert cli_main(["eval", "--checkpoint", str(tiny_checkpoint), "--suite", "heldout",
                     "--relevance-temperature-sweep", "0.25,0.4"]) == 2
    assert "--relevance-temperature-sweep: calibration runs on training keyframes" in capsys.readouterr().err
    assert cli_main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(synth_root), "--version",
                     "v1.0-synth", "--max-samples", "1", "--fit-class-offsets"]) == 2
    assert "needs a checkpoint with a text encoder" in capsys.readouterr().err


def test_evaluate_with_text_encoder_reports_semantic_miou(synth_root, tmp_path):
    """Zero-shot semantic occupancy: a checkpoint carrying a reducer and a text-encoder spec (seeded random tiny
    CLIP in the upstream file format) gets per-class IoU and mIoU instead of geometry only."""
    foundation = pytest.importorskip("distillnerf.foundation", reason="foundation module absent")
    weights = foundation.save_random_open_clip_weights("clip_tiny", tmp_path / "clip.pt", seed=0)
    encoder = foundation.OpenClipTextEncoder("clip_tiny", weights)
    embed_dim = encoder.encode(["car"]).shape[-1]
    reducer = foundation.FeatureReducer(64).fit(torch.randn(300, embed_dim, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(0)
    config = load_model_config("tiny")
    path = tmp_path / "model.pt"
    save_checkpoint(path, DistillNeRF(config), config, {"reducer": reducer.state_dict(), "text_encoder": encoder.spec()})
    from distillnerf_train.evaluation import evaluate

    report = evaluate(path, synth_root, "v1.0-synth", device="cpu", max_samples=1, fit_class_offsets=True)
    occ = report["occupancy"]
    assert occ["miou"] is not None and 0.0 <= occ["miou"] <= 100.0
    # the class-offset fit starts from the labels eval scored (no offsets in this config) and never loses
    fit = report["class_offsets"]
    assert fit["keyframes"] == 1 and fit["miou_without"] == pytest.approx(occ["miou"])
    assert fit["miou_with"] >= fit["miou_without"] and set(fit["class_score_offsets"]) <= set(OCC3D_CLASSES)
    assert set(occ["per_class_iou"]) == {name for name in OCC3D_CLASSES if name != "free"}
    # the semantic section: 2D accuracy needs feature targets (absent here), query AP needs only Occ3D labels
    from distillnerf_train.evaluation import evaluate as run

    query = run(path, synth_root, "v1.0-synth", device="cpu", max_samples=2)["query"]
    assert query is not None and set(query["per_class_ap"]) == {n.replace("_", " ") for n in OCC3D_CLASSES[:17]}
    known = [v for v in query["per_class_ap"].values() if v is not None]
    assert known and all(0.0 <= v <= 1.0 for v in known) and query["map"] == pytest.approx(sum(known) / len(known))
    # the relevance temperature sweep: the configured temperature's entry is the reported mAP; others differ
    swept = run(path, synth_root, "v1.0-synth", device="cpu", max_samples=2, temperature_sweep=(0.05, 4.0))["query"]
    own = str(query["temperature"])
    assert set(swept["temperature_sweep"]) == {own, "0.05", "4.0"} and swept["map"] == pytest.approx(query["map"])
    assert swept["temperature_sweep"][own] == pytest.approx(query["map"])
    assert all(0.0 <= m <= 1.0 for m in swept["temperature_sweep"].values())
    assert "temperature_sweep" not in query  # only when asked


def test_camera_dropout_scores_outside_the_dropped_view(synth_root, tiny_checkpoint):
    import numpy as np

    from distillnerf.occupancy import OccGridSpec
    from distillnerf.rig import load_rig
    from distillnerf_train.evaluation import dropped_cameras, evaluate, outside_views

    assert dropped_cameras(2, 5, 6) == [5, 0] and dropped_cameras(1, 0, 6) == [0]
    rig = load_rig("nuscenes").resized(64, 36)
    front = rig.camera("CAM_FRONT")
    outside = outside_views(OccGridSpec(), front.intrinsics[None], front.cam_to_ego[None], (64, 36))
    assert not outside[150, 100, 3] and outside[50, 100, 3]  # 20 m ahead is seen, 20 m behind is not
    report = evaluate(tiny_checkpoint, synth_root, "v1.0-synth", device="cpu", max_samples=2, drop_cameras=(1, 2))
    for count in ("1", "2"):
        d = report["camera_dropout"][count]
        assert 0.0 <= d["iou_dropped"] <= 100.0 and 0.0 <= d["iou_all_cameras"] <= 100.0
        only = d["only_dropped_view"]
        assert 0.0 <= only["iou_dropped"] <= 100.0 and 0.0 <= only["iou_all_cameras"] <= 100.0
    # the region only the dropped camera sees: inside its view, outside every other camera's
    others = [c for c in rig.camera_names if c != "CAM_FRONT"]
    elsewhere = outside_views(OccGridSpec(), np.stack([rig.camera(c).intrinsics for c in others]),
                              np.stack([rig.camera(c).cam_to_ego for c in others]), (64, 36))
    only_front = ~outside & elsewhere
    assert only_front[150, 100, 3] and not only_front[50, 100, 3]  # 20 m straight ahead: the front camera alone
    assert np.isfinite(report["occupancy"]["geometric_iou"])


def test_2d_class_truth_is_read_in_the_targets_own_space(synth_root, tmp_path):
    """The 2D accuracy's truth comes from the prototypes stored beside the targets, so a reducer refitted for the
    evaluation data (another fit than the checkpoint's) cannot move it; the prediction uses the checkpoint's."""
    import shutil

    from distillnerf.foundation import FeatureReducer, OpenClipTextEncoder, save_random_open_clip_weights
    from distillnerf.perception import Perception
    from distillnerf_train.data import DataConfig, NuScenesKeyframes
    from distillnerf_train.class_scores import SemanticScores, stored_prototypes
    from distillnerf_train.features.semantic import write_semantic_targets

    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    weights = save_random_open_clip_weights("clip_tiny", tmp_path / "clip.pt", seed=0)
    write_semantic_targets(root, "clip_tiny", weights)
    encoder = OpenClipTextEncoder("clip_tiny", weights)
    # the checkpoint carries a reducer of its own fit: its prototypes lie elsewhere than the data's
    other = FeatureReducer(64).fit(torch.randn(300, encoder.encode(["car"]).shape[-1],
                                               generator=torch.Generator().manual_seed(1)))
    config = load_model_config("tiny")
    path = tmp_path / "model.pt"
    save_checkpoint(path, DistillNeRF(config), config, {"reducer": other.state_dict(), "text_encoder": encoder.spec()})
    perception = Perception.from_checkpoint(path, device="cpu")

    dataset = NuScenesKeyframes(DataConfig(dataroot=str(root), version="v1.0-synth", input_size=config.input_size,
                                           render_size=config.render_size, feature_dim=64, features=True))
    stored = stored_prototypes(dataset)
    meta = torch.load(root / "features" / "reducer.pt", weights_only=True)
    assert torch.equal(stored, meta["class_targets"])
    item = dataset[0]
    target, valid = item["features"][None], item["features_valid"][None]
    labels = torch.cdist(target[0].permute(0, 2, 3, 1).reshape(-1, 64), stored).argmin(1)
    assert labels.unique().numel() > 1
    checkpoint_prototypes = perception._text_embeddings([n.replace("_", " ") for n in OCC3D_CLASSES[:17]] + ["sky"])
    n, _, h, w = target[0].shape
    perfect = checkpoint_prototypes[labels].reshape(n, h, w, 64).permute(0, 3, 1, 2)[None]

    in_own_space = SemanticScores(perception, stored)
    in_own_space.update_2d(perfect[0], target[0], valid[0])
    assert in_own_space.compute()["accuracy_2d"] == 1.0
    in_checkpoint_space = SemanticScores(perception)
    in_checkpoint_space.update_2d(perfect[0], target[0], valid[0])
    assert in_checkpoint_space.compute()["accuracy_2d"] < 1.0


def test_class_depth_errors_pool_pixels_per_class_of_their_feature_target():
    from distillnerf_train.class_scores import ClassDepthErrors

    prototypes = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # one camera, 2x3 pixels: four 'road' (class 0) pixels exact, two 'car' (class 1) pixels 10 % and 30 % off
    features = torch.stack([prototypes[c] for c in (0, 0, 0, 0, 1, 1)]).T.reshape(1, 2, 2, 3)
    target = torch.full((1, 2, 3), 10.0)
    pred = torch.tensor([[[10.0, 10.0, 10.0], [10.0, 11.0, 13.0]]])
    errors = ClassDepthErrors(prototypes, ["road", "car", "sky"])
    errors.update(pred, target, features, 1e-3, 80.0)
    target_far = target.clone()
    target_far[0, 1, 2] = 115.0  # beyond the range (the sky's depth): not scored
    errors.update(pred, target_far, features, 1e-3, 80.0)
    result = errors.compute()
    assert set(result) == {"road", "car"}  # no sky pixel
    assert result["road"] == {"abs_rel": 0.0, "pixels": 8}
    assert result["car"]["pixels"] == 3 and result["car"]["abs_rel"] == pytest.approx((0.1 + 0.3 + 0.1) / 3)
