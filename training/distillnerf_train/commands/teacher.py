"""``distillnerf teacher``: fit the offline per-scene NeRF teacher and cache its dense targets."""

from __future__ import annotations

import argparse
import sys

from distillnerf.cli import image_size


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shard must be i/n, e.g. 0/8, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"shard {text}: need 0 <= i < n")
    return index, count



def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="fit the offline per-scene NeRF teacher and cache dense depth, sky masks and virtual views",
        description="Optimise a per-scene field on all keyframes and cameras (photometric L1, LiDAR depth, "
                    "line-of-sight loss), then write DIR/teacher/<sample_data_token>.npz for every keyframe camera "
                    "(depth, sky, virtual views 1 m left/right/up) and DIR/teacher/scenes/<scene>.json with the "
                    "fit's figures. Defaults come from distillnerf_train/configs/train/teacher.yaml.")
    p.add_argument("--data", required=True, help="nuScenes-format dataroot")
    p.add_argument("--version", required=True, help="table folder, e.g. v1.0-trainval, v1.0-synth")
    p.add_argument("--scene", action="append", help="scene name (repeatable); default: every scene of the version")
    p.add_argument("--shard", type=_shard, help="i/n: this machine's share of the (sorted) scene list")
    p.add_argument("--steps", type=int, help="optimisation steps per scene")
    p.add_argument("--size", type=image_size, help="WxH of training rays and cached renders")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda")
    p.add_argument("--out", help="output folder (default DIR/teacher)")
    p.add_argument("--config", default="teacher", help="config name in distillnerf_train/configs/train or a path")
    p.add_argument("--skip-done", action="store_true", help="skip scenes whose scenes/<scene>.json exists")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from distillnerf.config_files import load_yaml

    from ..data import open_nuscenes
    from ..teacher.pipeline import TeacherConfig, run_scene
    from ..teacher.scene import scene_names, shard

    try:
        config = TeacherConfig.from_dict(load_yaml(args.config, "train"), f"teacher config {args.config}")
    except (FileNotFoundError, ValueError) as error:
        print(f"distillnerf teacher: {error}", file=sys.stderr)
        return 2
    if args.steps is not None:
        config.optim.steps = args.steps
    if args.size is not None:
        config.size = args.size
    if args.device is not None:
        config.device = args.device
    try:
        nusc = open_nuscenes(args.data, args.version)
    except (FileNotFoundError, ValueError) as error:
        print(f"distillnerf teacher: {error}", file=sys.stderr)
        return 1
    available = scene_names(args.data, args.version, nusc)
    names = args.scene or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        print(f"distillnerf teacher: scene(s) {', '.join(unknown)} not in {args.version}", file=sys.stderr)
        return 2
    if args.shard is not None:
        names = shard(names, *args.shard)
    out = Path(args.out) if args.out else Path(args.data) / "teacher"
    for name in names:
        if args.skip_done and (out / "scenes" / f"{name}.json").is_file():
            print(f"{name}: already done, skipped")
            continue
        report = run_scene(args.data, args.version, name, config, out, nusc=nusc,
                           log=lambda line: print(line, file=sys.stderr, flush=True))
        gt = report.get("gt_depth", {})
        print(f"{name}: PSNR {report['psnr']:.2f} dB, AbsRel vs LiDAR {report['lidar'].get('abs_rel', float('nan')):.3f}"
              + (f", AbsRel vs exact depth {gt['abs_rel']:.3f}" if gt else "") + f", {report['seconds']:.0f} s")
    print(f"teacher targets for {len(names)} scene(s) in {out}")
    return 0
