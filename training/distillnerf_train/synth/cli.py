"""``distillnerf synth``: write the synthetic driving world as a nuScenes dataroot, benchmark it, or preview it."""

from __future__ import annotations

import argparse
import sys

from distillnerf.cli import image_size


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="render the synthetic driving world as a nuScenes dataset (with depth and Occ3D ground truth)",
        description="Procedural street scenes ray-cast into a rig's cameras and LiDAR, written as a nuScenes "
                    "dataroot that the nuscenes-devkit loads, with exact depth, semantics and Occ3D occupancy under "
                    "DIR/gt/. Same seed, same bytes. --bench times keyframes; --preview draws one keyframe.")
    p.add_argument("--out", help="dataroot to write (created)")
    p.add_argument("--scenes", type=int, default=1, help="number of scenes (default 1)")
    p.add_argument("--frames", type=int, default=3, help="keyframes (2 Hz) per scene (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rig", default="nuscenes",
                   help="rig name in distillnerf/configs/rigs or a rig file (default nuscenes)")
    p.add_argument("--size", type=image_size, default=None, metavar="WxH",
                   help="render every camera at this size (intrinsics scaled); default: the rig's size")
    p.add_argument("--sweeps", action="store_true", help="also write 12 Hz camera sweeps between keyframes")
    p.add_argument("--version", default="v1.0-synth", help="nuScenes version folder name (default v1.0-synth)")
    p.add_argument("--config", default="default",
                   help="world settings in distillnerf_train/configs/synth (default: default)")
    p.add_argument("--bench", action="store_true", help="print keyframes per second at 228x128 and 800x450")
    p.add_argument("--json", action="store_true", help="with --bench: print JSON")
    p.add_argument("--repeats", type=int, default=3, help="with --bench: keyframes timed per size")
    p.add_argument("--preview", metavar="PNG", help="draw the first keyframe of scene --seed to this PNG")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import json

    from distillnerf_train.synth.config import load_synth_config

    try:
        args.config = load_synth_config(args.config)
    except (ValueError, FileNotFoundError) as error:
        print(f"distillnerf synth: {error}", file=sys.stderr)
        return 2
    if args.bench:
        from distillnerf_train.synth.bench import bench_keyframes

        sizes = [args.size] if args.size else [(228, 128), (800, 450)]
        report = bench_keyframes(sizes, args.seed, args.repeats, args.rig, args.config)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"synthetic keyframes on {report['machine']}")
            for r in report["results"]:
                parts = ", ".join(f"{k} {v:.3f} s" for k, v in r["seconds"].items())
                print(f"  {r['size']} x {r['cameras']} cameras, {r['threads']} threads: "
                      f"{r['keyframes_per_second']:.2f} keyframes/s "
                      f"({r['seconds_per_keyframe']:.3f} s wall, {r['cpu_seconds_per_keyframe']:.3f} s CPU: {parts}; "
                      f"{r['lidar_points']} LiDAR points)")
        return 0
    if args.preview:
        from distillnerf_train.synth.preview import save_preview
        from distillnerf_train.synth.world import SyntheticWorld

        world = SyntheticWorld([args.seed, 0], args.config, args.rig, args.size or (400, 225))
        path = save_preview(world.keyframe(0.0), args.preview, title=f"synthetic world, seed {args.seed}, scene 0")
        print(path)
        return 0
    if not args.out:
        print("distillnerf synth: give --out DIR (or --bench, or --preview PNG)")
        return 2
    from distillnerf_train.synth.dataset import generate_dataset

    if args.scenes < 1 or args.frames < 1:
        print("distillnerf synth: --scenes and --frames must be at least 1")
        return 2
    summary = generate_dataset(args.out, args.scenes, args.frames, args.seed, args.rig, args.size, args.sweeps,
                               args.version, args.config,
                               progress=lambda scene, k: print(f"{scene} keyframe {k + 1}/{args.frames}", flush=True))
    print(json.dumps(summary, indent=2))
    return 0
