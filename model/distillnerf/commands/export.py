"""``distillnerf export``: a trained checkpoint under a model config file's inference settings."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="write a checkpoint's weights under a model config file's inference settings",
        description="Copy CHECKPOINT's weights and extras to OUT with the model config MODEL "
                    "(distillnerf/configs/model/<name>.yaml or a path). The configs may differ only in inference "
                    "settings (occupancy_threshold, occupancy_subsamples, visibility_margin) and in those listed in "
                    "--changes: how settings calibrated after training reach a shipped checkpoint.")
    p.add_argument("--checkpoint", required=True, help="trained inference checkpoint (a run's model.pt)")
    p.add_argument("--model-config", required=True, help="model config name (distillnerf/configs/model) or YAML path")
    p.add_argument("--out", required=True, help="checkpoint to write (atomically)")
    p.add_argument("--changes", nargs="+", default=[], metavar="SETTING",
                   help="other model settings that may differ from the checkpoint's on purpose (for example "
                        "candidate_max_step, recalibrated after training); the weights must still fit")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from distillnerf.checkpoint import export_checkpoint
    from distillnerf.config import load_model_config

    try:
        path = export_checkpoint(args.checkpoint, args.out, load_model_config(args.model_config), args.changes)
    except (FileNotFoundError, ValueError) as error:
        print(f"distillnerf export: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
