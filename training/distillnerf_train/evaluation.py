"""Evaluation in the paper's protocol: reconstruction and novel-view PSNR/SSIM, depth against LiDAR and dense
depth, Occ3D occupancy, and per-stage latency.

Image metrics use the model's forward pass directly (at the model's input size, all cameras). Occupancy and the
latency line go through :class:`distillnerf.perception.Perception`, the same path the ROS node runs, so the
reported latency and semantics are those of the deployed pipeline.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from distillnerf.metrics import MeanAccumulator, Occ3DMetrics, depth_metrics, psnr, ssim
from distillnerf.occupancy import FREE_LABEL
from distillnerf.perception import Perception

from .data import DataConfig, NuScenesKeyframes
from .rendering import render_views


def _image_scores(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """PSNR over all valid cameras' pixels of one keyframe (the paper's 'all 6 cameras'), mean SSIM."""
    p, t = pred[valid].float(), target[valid].float()
    return {"psnr": psnr(p, t), "ssim": ssim(p, t)}


def evaluate(checkpoint: str | Path, dataroot: str | Path, version: str, scenes: list[str] | None = None,
             device: str = "auto", max_samples: int | None = None, min_depth: float = 1e-3,
             max_depth: float = 80.0, progress: bool = False, occupancy_sweep: tuple[float, ...] = ()) -> dict:
    """Score a checkpoint on every keyframe of a dataroot; returns a JSON-ready dict. ``occupancy_sweep``: also
    the geometric IoU at each of these occupancy thresholds (calibrate the threshold on training scenes)."""
    perception = Perception.from_checkpoint(checkpoint, device=device)
    model, config, dev = perception.model, perception.config, perception.device
    data_config = DataConfig(dataroot=str(dataroot), version=version, scenes=scenes, input_size=config.input_size,
                             render_size=config.render_size, feature_dim=config.feature_dim, next_keyframe=True,
                             teacher=True, features=False, occupancy=True)
    dataset = NuScenesKeyframes(data_config)
    count = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    loader = DataLoader(torch.utils.data.Subset(dataset, range(count)), batch_size=1, num_workers=0)

    recon, novel = MeanAccumulator(), MeanAccumulator()
    depth_lidar, depth_dense = MeanAccumulator(), MeanAccumulator()
    occupancy = Occ3DMetrics()
    sweep = {threshold: Occ3DMetrics() for threshold in occupancy_sweep}
    timings: dict[str, list[float]] = {}
    semantic = perception.text_encoder is not None
    iterator = loader
    if progress:
        from tqdm import tqdm

        iterator = tqdm(loader, total=count, desc="eval")
    model.eval()
    for batch in iterator:
        batch = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        valid = batch["camera_valid"][0]
        with torch.inference_mode():
            out = model(batch["images"], batch["intrinsics"], batch["cam_to_ego"], batch["camera_valid"])
            recon.update(_image_scores(out["rgb"][0], batch["images"][0], valid))
            depth_lidar.update(depth_metrics(out["depth"][0][valid], batch["lidar_depth"][0][valid],
                                             min_depth, max_depth))
            dense_valid = batch["dense_depth_valid"][0] & valid
            if bool(dense_valid.any()):  # sky (115 m) lies outside the evaluated range by construction
                depth_dense.update(depth_metrics(out["depth"][0][dense_valid], batch["dense_depth"][0][dense_valid],
                                                 min_depth, max_depth))
            if bool(batch["next_valid"][0]):
                views = render_views(model, out, batch["next_intrinsics"][:, :, None],
                                     batch["next_cam_to_ego"][:, :, None])
                next_valid = batch["next_camera_valid"][0]
                novel.update(_image_scores(views["rgb"][0, :, 0], batch["next_images"][0], next_valid))
        # The deployed path: occupancy, semantics and per-stage latency.
        images = [(img.permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8) for img in batch["images"][0]]
        result = perception.infer(images, batch["intrinsics"][0].cpu().numpy(), batch["cam_to_ego"][0].cpu().numpy(),
                                  valid.cpu().numpy())
        for stage, ms in result.timings_ms.items():
            timings.setdefault(stage, []).append(ms)
        if "occ_valid" in batch and bool(batch["occ_valid"][0]):
            gt, mask = batch["occ_semantics"][0].cpu().numpy(), batch["occ_mask_camera"][0].cpu().numpy()
            occupancy.update(result.semantics, gt, mask)
            for threshold, metrics in sweep.items():  # geometry only: every occupied voxel is 'others'
                metrics.update(np.where(result.occupancy_probability > threshold, 0, FREE_LABEL), gt, mask)

    report = {
        "checkpoint": str(checkpoint), "dataroot": str(dataroot), "version": version, "model": config.name,
        "device": str(dev), "samples": count,
        "reconstruction": recon.compute(),
        "novel_view": {**novel.compute(), "samples": novel.items},
        "depth_lidar": {**depth_lidar.compute(), "samples": depth_lidar.items},
        "depth_dense": {**depth_dense.compute(), "samples": depth_dense.items},
        "latency_ms": {stage: statistics.median(values) for stage, values in timings.items()},
    }
    if occupancy.samples:
        occ = occupancy.compute()
        if not semantic:  # without a text encoder every occupied voxel is 'others': only geometry is meaningful
            occ["miou"] = None
            occ["per_class_iou"] = None
            occ["note"] = "no text encoder in the checkpoint: semantics unavailable, geometric IoU only"
        report["occupancy"] = occ
        if sweep:
            report["occupancy"]["threshold"] = perception.config.occupancy_threshold
            report["occupancy"]["subsamples"] = list(perception.config.occupancy_subsamples)
            report["occupancy_sweep"] = {str(t): m.compute()["geometric_iou"] for t, m in sweep.items()}
    else:
        report["occupancy"] = None
    return report


def format_report(report: dict) -> str:
    """Human-readable summary, one line per protocol."""
    lines = [f"{report['samples']} keyframes of {report['dataroot']} ({report['version']}), model "
             f"{report['model']} on {report['device']}"]
    r = report["reconstruction"]
    lines.append(f"reconstruction   PSNR {r.get('psnr', float('nan')):.2f}  SSIM {r.get('ssim', float('nan')):.3f}")
    n = report["novel_view"]
    lines.append(f"novel view       PSNR {n.get('psnr', float('nan')):.2f}  SSIM {n.get('ssim', float('nan')):.3f}"
                 f"  ({n['samples']} keyframes with a next keyframe)" if n["samples"] else
                 "novel view       - (no keyframe has a next keyframe)")
    for key, label in (("depth_lidar", "depth vs LiDAR"), ("depth_dense", "depth vs dense")):
        d = report[key]
        if d["samples"]:
            lines.append(f"{label:16s} AbsRel {d['abs_rel']:.3f}  SqRel {d['sq_rel']:.3f}  RMSE {d['rmse']:.2f}  "
                         f"RMSE-log {d['rmse_log']:.3f}  d1 {d['d1']:.3f}  d2 {d['d2']:.3f}  d3 {d['d3']:.3f}")
        else:
            lines.append(f"{label:16s} - (no ground truth)")
    occ = report["occupancy"]
    if occ is None:
        lines.append("occupancy        - (no Occ3D ground truth)")
    else:
        miou = "-" if occ["miou"] is None else f"{occ['miou']:.2f}"
        lines.append(f"occupancy        IoU {occ['geometric_iou']:.2f}  mIoU {miou}  ({occ['samples']} keyframes)")
    if report.get("occupancy_sweep"):
        lines.append("IoU by threshold " + "  ".join(f"{t}: {iou:.2f}" for t, iou in report["occupancy_sweep"].items()))
    lines.append("latency (ms)     " + "  ".join(f"{k} {v:.1f}" for k, v in report["latency_ms"].items()))
    return "\n".join(lines)


__all__ = ["evaluate", "format_report"]
