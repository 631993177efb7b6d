"""``distillnerf eval``: score a checkpoint on a nuScenes-format dataroot in the paper's protocol."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="evaluate a checkpoint: PSNR/SSIM, novel view, depth, occupancy, latency",
        description="Reconstruction PSNR/SSIM over all cameras at the model's input size; novel view = the next "
                    "keyframe's cameras rendered from this keyframe's field; depth AbsRel/SqRel/RMSE/RMSE-log/d1-3 "
                    "against LiDAR and against dense depth (teacher files or exact synthetic depth), ground truth "
                    "in (1e-3, 80] m, no median scaling; Occ3D IoU/mIoU (camera mask) when gt/occ3d exists; "
                    "median per-stage latency of the deployed inference path.")
    p.add_argument("--checkpoint", required=True, help="model checkpoint (distillnerf.checkpoint format)")
    p.add_argument("--data", help="nuScenes-format dataroot, or a DGP dataset (DDAD: scene_dataset_v1.0.json; depth "
                                  "against its LiDAR only), or --suite")
    p.add_argument("--suite", metavar="NAME",
                   help="score on a held-out suite instead (distillnerf_train/configs/eval/NAME.yaml, e.g. "
                        "heldout): every seed, the mean and the worst; each seed's synthetic dataset is generated "
                        "on first use and cached")
    p.add_argument("--version", default="v1.0-trainval", help="table folder, e.g. v1.0-mini, v1.0-synth")
    p.add_argument("--scenes", nargs="*", help="scene names to evaluate (default: all)")
    p.add_argument("--max-samples", type=int, help="evaluate only the first N keyframes")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--occupancy-sweep", type=_thresholds, default=(), metavar="T,T,...",
                   help="also report the geometric IoU at each occupancy threshold (calibrate on training scenes, "
                        "then set occupancy_threshold in the model config and run distillnerf export)")
    p.add_argument("--free-space-sweep", type=_margins, default=(), metavar="M,M,...",
                   help="also report the geometric IoU with free-space carving at each margin in metres, and off, "
                        "at each --occupancy-sweep threshold (or the model's); calibrate on training scenes, then "
                        "set free_space_margin in the model config and run distillnerf export")
    p.add_argument("--relevance-temperature-sweep", type=_temperatures, default=(), metavar="T,T,...",
                   help="also report the query mAP at each relevance temperature (calibrate on training scenes, then "
                        "set relevance_temperature in configs/foundation/semantic_vocabulary.yaml)")
    p.add_argument("--drop-cameras", type=_counts, default=(), metavar="K,K,...",
                   help="also score occupancy with K cameras dropped (e.g. 1,2), outside the dropped cameras' view")
    p.add_argument("--fit-class-offsets", action="store_true",
                   help="also fit the model config's class_score_offsets (per-class score offsets that maximise the "
                        "Occ3D mIoU) on these keyframes; fit on training scenes, never on a held-out suite")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
    return p


def _comma_separated(kind, low, high, what: str, closed_high: bool = True):
    """An argparse type: comma-separated ``kind`` values in [low, high] (or [low, high))."""
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
        if not all(low <= v <= high if closed_high else low <= v < high for v in values):
            span = f"{low}..{high}" if closed_high else f"[{low}, {high})"
            raise argparse.ArgumentTypeError(f"{what} must lie in {span}, got {text!r}")
        return values
    return parse


_counts = _comma_separated(int, 1, 5, "camera counts")
_thresholds = _comma_separated(float, 0.0, 1.0, "thresholds", closed_high=False)
_margins = _comma_separated(float, 0.0, 100.0, "margins (metres)")
_temperatures = _comma_separated(float, 1e-3, 100.0, "temperatures")


def run(args) -> int:
    from distillnerf_train.evaluation import evaluate, format_report

    if bool(args.data) == bool(args.suite):
        print("distillnerf eval: error: give either --data DIR or --suite NAME", file=sys.stderr)
        return 2
    calibration = [flag for flag, used in (("--fit-class-offsets", args.fit_class_offsets),
                                           ("--occupancy-sweep", args.occupancy_sweep),
                                           ("--free-space-sweep", args.free_space_sweep),
                                           ("--relevance-temperature-sweep", args.relevance_temperature_sweep)) if used]
    if args.suite and calibration:
        print(f"distillnerf eval: error: {', '.join(calibration)}: calibration runs on training keyframes "
              "(--data), never on a held-out suite", file=sys.stderr)
        return 2
    if args.suite:
        return run_suite(args)
    try:
        report = evaluate(args.checkpoint, args.data, args.version, scenes=args.scenes, device=args.device,
                          max_samples=args.max_samples, progress=not args.json and sys.stderr.isatty(),
                          occupancy_sweep=args.occupancy_sweep, free_space_sweep=args.free_space_sweep,
                          drop_cameras=args.drop_cameras, fit_class_offsets=args.fit_class_offsets,
                          temperature_sweep=args.relevance_temperature_sweep)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"distillnerf eval: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, sort_keys=True, default=float) if args.json else format_report(report))
    return 0


def run_suite(args) -> int:
    from distillnerf_train.suite import evaluate_suite, format_suite

    try:
        result = evaluate_suite(args.checkpoint, args.suite, device=args.device,
                                evaluate_kwargs={"max_samples": args.max_samples,
                                                 "drop_cameras": args.drop_cameras})
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"distillnerf eval: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, sort_keys=True, default=float) if args.json else format_suite(result))
    return 0
