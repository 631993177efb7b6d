"""``distillnerf metrics``: score saved predictions against ground truth (depth maps, Occ3D occupancy).

Import-light on purpose: numpy and the metrics module are imported inside ``run``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="score saved depth or Occ3D occupancy predictions",
        description="Depth: AbsRel, SqRel, RMSE, RMSE-log, d1-d3 over ground truth in (min, max] m, camera z, "
                    "no median scaling. Occ3D: mIoU over classes 0-16 and geometric IoU, camera-visible voxels "
                    "only unless --no-mask.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    depth = kinds.add_parser("depth", help="depth metrics of a .npy prediction against a .npy/.npz ground truth")
    depth.add_argument("--pred", required=True, help=".npy (or .npz with key 'depth') predicted depth, metres")
    depth.add_argument("--gt", required=True, help=".npy (or .npz with key 'depth') ground-truth depth, 0 = none")
    depth.add_argument("--min-depth", type=float, default=1e-3)
    depth.add_argument("--max-depth", type=float, default=80.0)
    depth.add_argument("--json", action="store_true", help="print one JSON object")
    occ = kinds.add_parser("occ3d", help="Occ3D mIoU / IoU of predicted semantics against labels.npz")
    occ.add_argument("--pred", required=True, help=".npy labels [200,200,16] or Occ3D-style .npz with 'semantics'")
    occ.add_argument("--gt", required=True, help="Occ3D labels.npz (semantics, mask_camera)")
    occ.add_argument("--no-mask", action="store_true", help="score every voxel, not only camera-visible ones")
    occ.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
    return p


def _load_array(path: str, key: str):
    import numpy as np

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such file: {file}")
    try:
        data = np.load(file, allow_pickle=False)
    except Exception as error:  # numpy raises several types for a corrupt file
        raise ValueError(f"{file}: not a readable .npy/.npz file ({type(error).__name__}: {error})") from error
    if hasattr(data, "files"):
        if key not in data.files:
            raise ValueError(f"{file}: .npz has no key {key!r} (keys: {', '.join(data.files)})")
        return data[key], data
    return data, None


def _json_safe(value):
    import math

    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run(args) -> int:
    from distillnerf.metrics import Occ3DMetrics, depth_metrics

    try:
        if args.kind == "depth":
            pred, _ = _load_array(args.pred, "depth")
            gt, _ = _load_array(args.gt, "depth")
            if pred.shape != gt.shape:
                raise ValueError(f"shape mismatch: prediction {pred.shape} vs ground truth {gt.shape}")
            result = depth_metrics(pred, gt, args.min_depth, args.max_depth)
            if result["count"] == 0:
                raise ValueError(f"no ground-truth pixel lies in ({args.min_depth}, {args.max_depth}] m: nothing to "
                                 "score")
        else:
            pred, _ = _load_array(args.pred, "semantics")
            gt, gt_file = _load_array(args.gt, "semantics")
            if pred.shape != gt.shape:
                raise ValueError(f"shape mismatch: prediction {pred.shape} vs ground truth {gt.shape}")
            mask = None
            if not args.no_mask:
                if gt_file is None or "mask_camera" not in gt_file.files:
                    raise ValueError(f"{args.gt}: no 'mask_camera' to restrict to visible voxels (use --no-mask)")
                mask = gt_file["mask_camera"]
            metrics = Occ3DMetrics(use_mask=not args.no_mask)
            metrics.update(pred, gt, mask)
            result = metrics.compute()
    except (FileNotFoundError, ValueError) as error:
        print(f"distillnerf metrics {args.kind}: error: {error}", file=sys.stderr)
        return 2
    if args.json:  # strict JSON: a NaN (e.g. mIoU with no class present) is written as null
        print(json.dumps(_json_safe(result), sort_keys=True, allow_nan=False))
    elif args.kind == "depth":
        print(f"pixels {result['count']}  " + "  ".join(
            f"{k} {result[k]:.4f}" for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3")))
    else:
        print(f"mIoU {result['miou']:.2f}  geometric IoU {result['geometric_iou']:.2f}  "
              f"({result['voxels']} voxels{'' if result['use_mask'] else ', no mask'})")
        for name, value in result["per_class_iou"].items():
            print(f"  {name:22s} {'-' if value is None else f'{value:.2f}'}")
    return 0
