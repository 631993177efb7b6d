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

from distillnerf.metrics import MeanAccumulator, Occ3DMetrics, average_precision, depth_metrics, psnr, ssim
from distillnerf.occupancy import FREE_LABEL, OCC3D_CLASSES, OccGridSpec, occupancy_and_surface, occupied_voxels
from distillnerf.perception import Perception
from distillnerf.relevance import nearest_class, relevance

from .class_offsets import ClassOffsetFit
from .data import DataConfig, NuScenesKeyframes
from .data.dgp import DGPKeyframes, is_dgp_dataset
from .data.files import read_reducer_file
from .rendering import render_views


def _image_scores(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """PSNR over all valid cameras' pixels of one keyframe (the paper's 'all 6 cameras'), mean SSIM."""
    p, t = pred[valid].float(), target[valid].float()
    return {"psnr": psnr(p, t), "ssim": ssim(p, t)}


CLASS_NAMES = [name.replace("_", " ") for name in OCC3D_CLASSES[:FREE_LABEL]]


class SemanticScores:
    """2D semantic accuracy of rendered features and the per-class average precision of voxel relevance.

    2D: each pixel's class is the prototype (class prompt, or sky) nearest its feature target, among the prototypes
    stored beside the targets (``target_prototypes``, in the targets' own reduced space: the exact label for targets
    made from labels; the checkpoint's when none are given); the prediction is the checkpoint's prototype nearest
    the rendered feature. A reducer refitted for the evaluation data then cannot move the truth. 3D: at camera-visible
    voxels that the ground truth marks occupied, the relevance of each class prompt (against the others and the
    background words, as the node's query computes it) ranks the voxels; AP against membership of that class."""

    def __init__(self, perception: Perception, target_prototypes: torch.Tensor | None = None,
                 temperature_sweep: tuple[float, ...] = ()) -> None:
        self.perception = perception
        self.prototypes = perception._text_embeddings(CLASS_NAMES + ["sky"])
        self.target_prototypes = self.prototypes if target_prototypes is None else \
            target_prototypes.to(self.prototypes.device, self.prototypes.dtype)
        words, self.temperature = perception.relevance_settings()
        if any(t <= 0 for t in temperature_sweep):
            raise ValueError(f"relevance temperatures must be positive, got {temperature_sweep}")
        # the configured temperature first: its AP is the report's; the sweep's only calibrate it
        self.temperatures = list(dict.fromkeys((self.temperature, *temperature_sweep)))
        self.alternatives = [perception._text_embeddings([w for w in words if w != name]) for name in CLASS_NAMES]
        self.correct = np.zeros(len(CLASS_NAMES) + 1)
        self.total = np.zeros(len(CLASS_NAMES) + 1)
        self.scores: dict[float, list[np.ndarray]] = {t: [] for t in self.temperatures}
        self.labels: list[np.ndarray] = []

    def update_2d(self, rendered: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> None:
        """rendered / target [N,F,h,w], valid [N]."""
        f = rendered[valid].permute(0, 2, 3, 1).reshape(-1, rendered.shape[1])
        t = target[valid].permute(0, 2, 3, 1).reshape(-1, target.shape[1]).to(f.dtype)
        if f.shape[0] == 0:
            return
        truth = nearest_class(t, self.target_prototypes).cpu().numpy()
        pred = nearest_class(f, self.prototypes).cpu().numpy()
        np.add.at(self.total, truth, 1)
        np.add.at(self.correct, truth[pred == truth], 1)

    def update_3d(self, model, field, gt: np.ndarray, mask: np.ndarray) -> None:
        keep = mask.astype(bool) & (gt != FREE_LABEL)
        if not keep.any():
            return
        # read where the deployed path reads: each voxel's highest sub-sample above the occupancy threshold
        config = self.perception.config
        _, surface = occupancy_and_surface(model, field, self.perception.grid, config.occupancy_subsamples,
                                           config.occupancy_threshold)
        features = model.query_features(field, surface[0][torch.from_numpy(keep)][None])[0]
        for temperature, scores in self.scores.items():
            per_class = [relevance(features, self.prototypes[c], self.alternatives[c], temperature)
                         for c in range(len(CLASS_NAMES))]
            scores.append(torch.stack(per_class, 1).cpu().numpy().astype(np.float32))
        self.labels.append(gt[keep].astype(np.int64))

    def compute(self) -> dict:
        present = self.total > 0
        result = {"accuracy_2d": float(self.correct.sum() / max(self.total.sum(), 1)),
                  "class_accuracy_2d": float((self.correct[present] / self.total[present]).mean())
                  if present.any() else None}
        if self.labels:
            labels = np.concatenate(self.labels)
            by_temperature = {}
            for temperature, scores in self.scores.items():
                scores = np.concatenate(scores)
                per_class = {name: average_precision(scores[:, c], labels == c) for c, name in enumerate(CLASS_NAMES)}
                known = [v for v in per_class.values() if not np.isnan(v)]
                by_temperature[temperature] = (per_class, float(np.mean(known)) if known else None)
            per_class, mean_ap = by_temperature[self.temperature]
            result.update(per_class_ap={k: (None if np.isnan(v) else v) for k, v in per_class.items()},
                          map=mean_ap, voxels=int(labels.shape[0]), temperature=self.temperature)
            if len(self.temperatures) > 1:
                result["temperature_sweep"] = {str(t): by_temperature[t][1] for t in self.temperatures}
        return result


class ClassDepthErrors:
    """Depth AbsRel against the dense depth per class, pooled over pixels: each pixel's class is the prototype
    nearest its feature target (as for the 2D accuracy). Shows which things the depth fails on (near cars and
    people) when road and buildings fill most pixels and hold the image-averaged figure down."""

    def __init__(self, prototypes: torch.Tensor, names: list[str]) -> None:
        self.prototypes, self.names = prototypes, names
        self.error = np.zeros(len(names))
        self.pixels = np.zeros(len(names), dtype=np.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor, features: torch.Tensor, min_depth: float,
               max_depth: float) -> None:
        """pred / target [N,h,w] of the cameras to score, their feature targets [N,F,h,w]."""
        ok = (target > min_depth) & (target <= max_depth)
        if not bool(ok.any()):
            return
        t = features.permute(0, 2, 3, 1)[ok].float()
        classes = nearest_class(t, self.prototypes.to(t)).cpu().numpy()
        p = pred[ok].float().clamp(min_depth, max_depth)
        rel = ((p - target[ok]).abs() / target[ok]).double().cpu().numpy()
        np.add.at(self.error, classes, rel)
        np.add.at(self.pixels, classes, 1)

    def compute(self) -> dict:
        return {name: {"abs_rel": float(self.error[c] / self.pixels[c]), "pixels": int(self.pixels[c])}
                for c, name in enumerate(self.names) if self.pixels[c]}


def stored_prototypes(dataset) -> torch.Tensor | None:
    """The class prototypes ``distillnerf features`` stored beside a dataset's feature targets, in
    ``CLASS_NAMES + ["sky"]`` order, or None (no targets, or written before prototypes were stored)."""
    if not getattr(dataset, "has_features", False):  # the DGP rig has no feature targets
        return None
    path = dataset.features_dir / "reducer.pt"
    if not path.is_file():
        return None
    meta = read_reducer_file(path)
    if "class_targets" not in meta:
        return None
    if list(meta.get("class_names", [])) != CLASS_NAMES + ["sky"]:
        raise ValueError(f"{path}: its class prototypes are not the Occ3D class prompts and sky")
    return torch.as_tensor(meta["class_targets"], dtype=torch.float32)


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
