"""``distillnerf features``: dense CLIP (and DINOv2) targets reduced to 64-d, one file per camera image."""

from __future__ import annotations

import argparse
import sys

from distillnerf.cli import image_size



def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="compute foundation-feature targets (CLIP MaskCLIP-style, DINOv2) for a nuScenes dataroot",
        description="Extract dense CLIP features (value embedding of the last attention block, projected to the "
                    "joint space) and optionally DINOv2 patch features from LOCAL weight files, fit a 64-d PCA + "
                    "min-max reducer over the dataset, and write DIR/features/<sample_data_token>.npz plus "
                    "DIR/features/reducer.pt. Defaults come from distillnerf_train/configs/train/features.yaml.")
    p.add_argument("--data", required=True, help="nuScenes-format dataroot")
    p.add_argument("--version", help="table folder, e.g. v1.0-trainval, v1.0-mini, v1.0-synth (not with "
                                     "--from-semantics)")
    p.add_argument("--from-semantics", action="store_true",
                   help="datasets with exact per-pixel semantics (the synthetic world): each pixel's target is the "
                        "reduced CLIP text embedding of its class prompt, so text queries work without CLIP image "
                        "features. Supervised by the labels, not zero-shot (see docs/features.md)")
    p.add_argument("--store-weights-as",
                   help="with --from-semantics: the text-tower weights path recorded in reducer.pt (a relative path "
                        "is resolved beside the checkpoint that carries it)")
    p.add_argument("--clip-model", required=True,
                   help="open_clip architecture (e.g. ViT-L-14-336) or a distillnerf/configs/foundation name "
                        "(clip_tiny)")
    p.add_argument("--clip-weights", required=True, help="local open_clip weight file (.pt/.bin)")
    p.add_argument("--dino-model", help="timm DINOv2 architecture (e.g. vit_base_patch14_dinov2) or config name")
    p.add_argument("--dino-weights", help="local timm state dict for --dino-model")
    p.add_argument("--size", type=image_size, help="WxH fed to the foundation models")
    p.add_argument("--out", help="output folder (default DIR/features)")
    p.add_argument("--config", default="features",
                   help="defaults file (name in distillnerf_train/configs/train or a path)")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from distillnerf.config_files import load_yaml
    from distillnerf.dataclass_config import dataclass_from_dict

    from ..features.pipeline import FeatureJob, run_features

    if args.from_semantics:
        return run_from_semantics(args)
    if not args.version:
        print("distillnerf features: --version is required (except with --from-semantics)", file=sys.stderr)
        return 2
    if bool(args.dino_model) != bool(args.dino_weights):
        print("distillnerf features: --dino-model and --dino-weights go together", file=sys.stderr)
        return 2
    for label, path in (("--clip-weights", args.clip_weights), ("--dino-weights", args.dino_weights)):
        if path and not Path(path).is_file():
            print(f"distillnerf features: {label} {path} is not a file (weights are only read locally)",
                  file=sys.stderr)
            return 2
    try:
        defaults = load_yaml(args.config, "train")
        overrides = {"size": args.size, "out": args.out, "device": args.device}
        job = dataclass_from_dict(FeatureJob, {
            "data": args.data, "version": args.version, "clip_model": args.clip_model,
            "clip_weights": args.clip_weights, "dino_model": args.dino_model, "dino_weights": args.dino_weights,
            **defaults, **{k: v for k, v in overrides.items() if v is not None}}, f"features config {args.config}")
    except (FileNotFoundError, ValueError) as error:
        print(f"distillnerf features: {error}", file=sys.stderr)
        return 2

    def progress(done: int, total: int) -> None:
        print(f"\rfeatures: {done}/{total} camera images", end="", file=sys.stderr, flush=True)

    try:
        out = run_features(job, progress)
    except (FileNotFoundError, ValueError, NotImplementedError) as error:
        print(f"\ndistillnerf features: {error}", file=sys.stderr)
        return 1
    print(f"\nwrote feature targets and reducer.pt to {out}")
    return 0


def run_from_semantics(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..features.semantic import write_semantic_targets

    if not Path(args.clip_weights).is_file():
        print(f"distillnerf features: --clip-weights {args.clip_weights} is not a file (weights are only read "
              "locally)", file=sys.stderr)
        return 2
    try:
        summary = write_semantic_targets(args.data, args.clip_model, args.clip_weights, args.out,
                                         weights_reference=args.store_weights_as)
    except (FileNotFoundError, ValueError) as error:
        print(f"distillnerf features: {error}", file=sys.stderr)
        return 1
    print(f"wrote {summary['targets']} semantic feature targets and reducer.pt to {summary['out']}")
    return 0
