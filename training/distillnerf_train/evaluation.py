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
from distillnerf.occupancy import FREE_LABEL, OccGridSpec, occupied_voxels
from distillnerf.perception import Perception

from .class_offsets import ClassOffsetFit
from .class_scores import CLASS_NAMES, ClassDepthErrors, SemanticScores, stored_prototypes
from .data import DataConfig, NuScenesKeyframes
from .data.dgp import DGPKeyframes, is_dgp_dataset
from .rendering import render_views


def _image_scores(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """PSNR over all valid cameras' pixels of one keyframe (the paper's 'all 6 cameras'), mean SSIM."""
    p, t = pred[valid].float(), target[valid].float()
    return {"psnr": psnr(p, t), "ssim": ssim(p, t)}


def dropped_cameras(count: int, keyframe: int, cameras: int) -> list[int]:
    """The ``count`` neighbouring cameras dropped on keyframe ``keyframe``: rotating, so every camera is dropped."""
    return [(keyframe + i) % cameras for i in range(count)]


def outside_views(grid: OccGridSpec, intrinsics: np.ndarray, cam_to_ego: np.ndarray, size: tuple[int, int]
                  ) -> np.ndarray:
    """[X,Y,Z] bool: voxel centres that project into none of the given cameras (intrinsics at ``size``)."""
    from distillnerf.geometry import project_points

    centres = grid.centres("cpu")
    k = torch.as_tensor(np.asarray(intrinsics), dtype=torch.float32)
    e = torch.as_tensor(np.asarray(cam_to_ego), dtype=torch.float32)
    uv, z = project_points(centres, k, e)
    w, h = size
    seen = ((z > 0.1) & (uv[..., 0] >= 0) & (uv[..., 0] < w) & (uv[..., 1] >= 0) & (uv[..., 1] < h)).any(0)
    return (~seen).reshape(grid.size).numpy()


def evaluate(checkpoint: str | Path, dataroot: str | Path, version: str, scenes: list[str] | None = None,
             device: str = "auto", max_samples: int | None = None, min_depth: float = 1e-3,
             max_depth: float = 80.0, progress: bool = False, occupancy_sweep: tuple[float, ...] = (),
             free_space_sweep: tuple[float, ...] = (), drop_cameras: tuple[int, ...] = (),
             fit_class_offsets: bool = False, temperature_sweep: tuple[float, ...] = ()) -> dict:
    """Score a checkpoint on every keyframe of a dataroot; returns a JSON-ready dict. ``occupancy_sweep``: also
    the geometric IoU at each of these occupancy thresholds (calibrate the threshold on training scenes);
    ``free_space_sweep``: also at each free-space margin, and with carving off, for each of those thresholds (or the
    model's).
    ``drop_cameras``: also the geometric IoU with that many cameras dropped (rotating over the keyframes), scored
    against the all-camera prediction on the same voxels: camera-visible ones outside the dropped cameras' view.
    ``fit_class_offsets``: also fit the model config's ``class_score_offsets`` on these keyframes (training ones).
    ``temperature_sweep``: also the query mAP at each of these relevance temperatures (calibrate
    ``relevance_temperature`` on training scenes)."""
    perception = Perception.from_checkpoint(checkpoint, device=device)
    model, config, dev = perception.model, perception.config, perception.device
    if is_dgp_dataset(dataroot):  # a second real rig (DDAD): depth against its LiDAR
        dataset = DGPKeyframes(dataroot, config.input_size, config.render_size, (1.0, max_depth))
        version = "dgp"
    else:
        data_config = DataConfig(dataroot=str(dataroot), version=version, scenes=scenes, input_size=config.input_size,
                                 render_size=config.render_size, feature_dim=config.feature_dim, next_keyframe=True,
                                 teacher=True, features=True, occupancy=True)
        dataset = NuScenesKeyframes(data_config)
    count = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    loader = DataLoader(torch.utils.data.Subset(dataset, range(count)), batch_size=1, num_workers=0)

    recon, novel = MeanAccumulator(), MeanAccumulator()
    depth_lidar, depth_dense = MeanAccumulator(), MeanAccumulator()
    occupancy = Occ3DMetrics()
    # Geometry only (every occupied voxel 'others'), per (threshold, free-space margin): the threshold sweep at the
    # model's margin, the free-space sweep at each margin and with carving off; shared keys are scored once.
    margin = config.free_space_margin
    sweep_keys = [(t, margin) for t in occupancy_sweep]
    carving_keys = [(t, m) for t in (occupancy_sweep or (config.occupancy_threshold,))
                    for m in ((None, *free_space_sweep) if free_space_sweep else ())]
    geometry = {key: Occ3DMetrics() for key in (*sweep_keys, *carving_keys)}
    # per count: (all cameras, dropped) outside the dropped view, and the same where only the dropped cameras see
    dropout = {count: tuple(Occ3DMetrics() for _ in range(4)) for count in drop_cameras}
    timings: dict[str, list[float]] = {}
    semantic = perception.text_encoder is not None
    semantic_scores = SemanticScores(perception, stored_prototypes(dataset), temperature_sweep) \
        if semantic and config.feature_head else None
    class_depth = ClassDepthErrors(semantic_scores.target_prototypes, CLASS_NAMES + ["sky"]) \
        if semantic_scores is not None else None
    if temperature_sweep and semantic_scores is None:
        raise ValueError("a relevance temperature sweep needs a checkpoint with a feature head and a text encoder")
    if fit_class_offsets and not semantic:
        raise ValueError("fitting class offsets needs a checkpoint with a text encoder (class prototypes)")
    offset_fit = ClassOffsetFit() if fit_class_offsets else None
    iterator = loader
    if progress:
        from tqdm import tqdm

        iterator = tqdm(loader, total=count, desc="eval")
    model.eval()
    for keyframe, batch in enumerate(iterator):
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
            if class_depth is not None and "features" in batch and bool(batch["features_valid"][0].any()):
                cams = dense_valid & batch["features_valid"][0]
                class_depth.update(out["depth"][0][cams], batch["dense_depth"][0][cams], batch["features"][0][cams],
                                   min_depth, max_depth)
            if semantic_scores is not None and "features" in batch and "features" in out:
                semantic_scores.update_2d(out["features"][0], batch["features"][0],
                                          valid & batch["features_valid"][0])
            if semantic_scores is not None and "occ_valid" in batch and bool(batch["occ_valid"][0]):
                semantic_scores.update_3d(model, out["field"], batch["occ_semantics"][0].cpu().numpy(),
                                          batch["occ_mask_camera"][0].cpu().numpy())
        # The deployed path: occupancy, semantics and per-stage latency.
        images = [(img.permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8) for img in batch["images"][0]]
        result = perception.infer(images, batch["intrinsics"][0].cpu().numpy(), batch["cam_to_ego"][0].cpu().numpy(),
                                  valid.cpu().numpy())
        for stage, ms in result.timings_ms.items():
            timings.setdefault(stage, []).append(ms)
        if "occ_valid" in batch and bool(batch["occ_valid"][0]):
            gt, mask = batch["occ_semantics"][0].cpu().numpy(), batch["occ_mask_camera"][0].cpu().numpy()
            occupancy.update(result.semantics, gt, mask)
            if offset_fit is not None:
                offset_fit.update(result.occupied, perception.class_scores(result.voxel_features), gt, mask)
            probability, offset = torch.from_numpy(result.occupancy_probability), torch.from_numpy(result.surface_offset)
            for (threshold, free_margin), metrics in geometry.items():
                occupied = occupied_voxels(probability, offset, threshold, free_margin).numpy()
                metrics.update(np.where(occupied, 0, FREE_LABEL), gt, mask)
            if dropout:
                intrinsics, cam_to_ego = batch["intrinsics"][0].cpu().numpy(), batch["cam_to_ego"][0].cpu().numpy()
                visible, all_cameras = mask.astype(bool), np.where(result.occupied, 0, FREE_LABEL)
            for dropped_count, (full, partial, full_only, partial_only) in dropout.items():
                cams = dropped_cameras(dropped_count, keyframe, valid.shape[0])
                keep = valid.cpu().numpy().copy()
                keep[cams] = False
                dropped = np.where(perception.infer(images, intrinsics, cam_to_ego, keep).occupied, 0, FREE_LABEL)
                outside = outside_views(perception.grid, intrinsics[cams], cam_to_ego[cams], config.input_size)
                only_dropped = ~outside & outside_views(perception.grid, intrinsics[keep], cam_to_ego[keep],
                                                        config.input_size)
                for (on_all, on_dropped), region in (((full, partial), visible & outside),
                                                     ((full_only, partial_only), visible & only_dropped)):
                    on_all.update(all_cameras, gt, region)
                    on_dropped.update(dropped, gt, region)

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
        iou = {key: metrics.compute()["geometric_iou"] for key, metrics in geometry.items()}
        if sweep_keys:
            report["occupancy"]["threshold"] = config.occupancy_threshold
            report["occupancy"]["subsamples"] = list(config.occupancy_subsamples)
            report["occupancy_sweep"] = {str(t): iou[(t, m)] for t, m in sweep_keys}
        report["occupancy"]["free_space_margin"] = margin
        if carving_keys:
            report["free_space_sweep"] = {}
            for t, m in carving_keys:
                report["free_space_sweep"].setdefault(str(t), {})["off" if m is None else str(m)] = iou[(t, m)]
    else:
        report["occupancy"] = None
    report["query"] = semantic_scores.compute() if semantic_scores is not None else None
    by_class = class_depth.compute() if class_depth is not None else {}
    report["depth_dense_by_class"] = by_class or None
    if offset_fit is not None and offset_fit.keyframes:
        report["class_offsets"] = offset_fit.fit()
    if dropout:
        report["camera_dropout"] = {
            str(dropped_count): {"iou_all_cameras": full.compute()["geometric_iou"],
                                 "iou_dropped": partial.compute()["geometric_iou"],
                                 "region": "camera-visible voxels outside the dropped cameras' view",
                                 # what KDBTS distillation is for: space only the dropped cameras saw
                                 "only_dropped_view": {"iou_all_cameras": full_only.compute()["geometric_iou"],
                                                       "iou_dropped": partial_only.compute()["geometric_iou"]}}
            for dropped_count, (full, partial, full_only, partial_only) in dropout.items() if full.samples}
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
    if report.get("depth_dense_by_class"):
        largest = sorted(report["depth_dense_by_class"].items(), key=lambda item: -item[1]["pixels"])[:8]
        lines.append("AbsRel by class " + "  ".join(f"{name} {d['abs_rel']:.3f}" for name, d in largest))
    occ = report["occupancy"]
    if occ is None:
        lines.append("occupancy        - (no Occ3D ground truth)")
    else:
        miou = "-" if occ["miou"] is None else f"{occ['miou']:.2f}"
        lines.append(f"occupancy        IoU {occ['geometric_iou']:.2f}  mIoU {miou}  ({occ['samples']} keyframes)")
    q = report.get("query")
    if q and (q.get("class_accuracy_2d") is not None or q.get("map") is not None):
        def fmt(value):
            return "-" if value is None else f"{value:.3f}"

        lines.append(f"semantics        2D accuracy {fmt(q['accuracy_2d'] if q['class_accuracy_2d'] is not None else None)}"
                     f" (per class {fmt(q['class_accuracy_2d'])})  query mAP {fmt(q.get('map'))}")
    for count, d in (report.get("camera_dropout") or {}).items():
        only = d["only_dropped_view"]
        lines.append(f"{count} camera(s) dropped  IoU {d['iou_dropped']:.2f} against {d['iou_all_cameras']:.2f} with "
                     f"all cameras, outside the dropped view; {only['iou_dropped']:.2f} against "
                     f"{only['iou_all_cameras']:.2f} where only the dropped cameras see")
    if report.get("occupancy_sweep"):
        lines.append("IoU by threshold " + "  ".join(f"{t}: {iou:.2f}" for t, iou in report["occupancy_sweep"].items()))
    for threshold, by_margin in (report.get("free_space_sweep") or {}).items():
        lines.append(f"IoU at threshold {threshold} by free-space margin (m) " +
                     "  ".join(f"{m}: {iou:.2f}" for m, iou in by_margin.items()))
    if q and q.get("temperature_sweep"):
        lines.append("query mAP by relevance temperature " +
                     "  ".join(f"{t}: {m:.4f}" for t, m in q["temperature_sweep"].items() if m is not None))
    if report.get("class_offsets"):
        fit = report["class_offsets"]
        lines.append(f"class offsets    mIoU {fit['miou_without']:.2f} -> {fit['miou_with']:.2f} with "
                     f"class_score_offsets: {fit['class_score_offsets']} (model config)")
    lines.append("latency (ms)     " + "  ".join(f"{k} {v:.1f}" for k, v in report["latency_ms"].items()))
    return "\n".join(lines)


__all__ = ["evaluate", "format_report"]
