"""``distillnerf train``: train DistillNeRF from a config file; single process or ``torchrun`` DDP."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="train DistillNeRF (single process or torchrun DDP)",
        description="Train from distillnerf_train/configs/train/<name>.yaml or a path. Writes "
                    "OUT/checkpoints/last.pt (resumable state) and OUT/model.pt (inference checkpoint for distillnerf.checkpoint.load_checkpoint), "
                    "TensorBoard logs in OUT/tensorboard. Multi-process: torchrun --nproc_per_node K -m "
                    "distillnerf.cli train ... (gloo on CPU, NCCL on CUDA).")
    p.add_argument("--config", required=True,
                   help="training config name (distillnerf_train/configs/train) or YAML path")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="STATE",
                   help="continue from OUT/checkpoints/last.pt (or the given state file) exactly where it stopped")
    p.add_argument("--out", help="output folder (default: train.out of the config)")
    p.add_argument("--max-steps", type=int, help="override train.max_steps")
    p.add_argument("--data", help="override data.dataroot")
    p.add_argument("--version", help="override data.version")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override train.device")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from dataclasses import replace
    from pathlib import Path

    from distillnerf_train.config import load_train_config
    from distillnerf_train.trainer import Trainer

    try:
        config = load_train_config(args.config)
        if args.data or args.version:
            config = replace(config, data=replace(config.data, dataroot=args.data or config.data.dataroot,
                                                  version=args.version or config.data.version))
        if args.device:
            config = replace(config, train=replace(config.train, device=args.device))
        trainer = Trainer(config, out_dir=args.out, max_steps=args.max_steps)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"distillnerf train: error: {error}", file=sys.stderr)
        return 2
    try:
        if args.resume is not None:
            trainer.resume(None if args.resume == "auto" else Path(args.resume))
        summary = trainer.train()
    except (FileNotFoundError, ValueError) as error:
        print(f"distillnerf train: error: {error}", file=sys.stderr)
        return 2
    finally:
        trainer.close()
    if trainer.is_main:
        if args.json:
            print(json.dumps(summary, sort_keys=True))
        else:
            print(f"trained to step {summary['step']} (loss {summary['loss']:.4f}) in {summary['seconds']:.1f} s; "
                  f"checkpoint {summary['checkpoint']}")
    return 0
