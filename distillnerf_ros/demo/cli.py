"""``distillnerf demo`` (and ``make demo``): argument parsing only; the pipeline lives in ``pipeline.py``."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

HELP = "run the whole pipeline on a synthetic drive (no dataset, no downloads) and write an HTML report"
DESCRIPTION = (
    "Generate a short synthetic drive (`distillnerf synth`), write it as a ROS 2 bag, start distillnerf_node, "
    "replay the bag into it over ROS one keyframe at a time, collect depth, occupancy, semantic occupancy, the "
    "feature query and latency, and write OUT/index.html, PNGs and OUT/metrics.json (depth AbsRel against the "
    "world's exact depth, occupancy IoU/mIoU against its Occ3D ground truth). Uses the shipped checkpoint "
    "model/distillnerf/checkpoints/cpu.pt; --random-weights checks the pipeline with an untrained model and says "
    "so in the report. See docs/demo.md.")


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    from .options import load_demo_defaults

    defaults = load_demo_defaults()
    p = subparsers.add_parser(name, help=HELP, description=DESCRIPTION)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, metavar="DATAROOT",
                        help="a nuScenes dataroot to use instead of the synthetic world (depth scored against its LiDAR)")
    source.add_argument("--bag", type=Path, metavar="BAG", help="replay your own ROS 2 bag (nuscenes2bag layout; depth scored against its LiDAR)")
    p.add_argument("--version", default=None,
                   help="table folder of --data (e.g. v1.0-tiny; default v1.0-mini)")
    p.add_argument("--query", default=defaults.query, metavar="TEXT",
                   help=f"open-vocabulary query shown as a heatmap (default {defaults.query!r}; '' for none)")
    p.add_argument("--frames", type=int, default=defaults.frames, metavar="K",
                   help=f"keyframes to generate and replay (default {defaults.frames})")
    p.add_argument("--out", type=Path, default=defaults.out, help=f"report folder (default {defaults.out})")
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed of the synthetic world (and random weights)")
    p.add_argument("--size", default=defaults.size, metavar="WxH",
                   help=f"rendered camera size of the synthetic world (default {defaults.size})")
    p.add_argument("--checkpoint", default="", help="model checkpoint (default the shipped cpu.pt)")
    p.add_argument("--random-weights", action="store_true",
                   help="untrained seeded weights (pipeline check only; the report is labelled 'random weights')")
    p.add_argument("--model-config", default=defaults.model_config,
                   help=f"model config for --random-weights (default {defaults.model_config})")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default=defaults.device,
                   help=f"inference device of the node (default {defaults.device})")
    p.add_argument("--frame-timeout", type=float, default=defaults.frame_timeout,
                   help="seconds to wait for the node's outputs of one keyframe")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from distillnerf_ros.bag.nuscenes_source import DatasetError

    from dataclasses import replace

    from .options import DemoError, load_demo_defaults, say
    from .pipeline import run_demo
    from .report import write_report

    if args.frames < 1:
        print("distillnerf demo: error: --frames must be at least 1", file=sys.stderr)
        return 2
    if args.version and args.data is None:
        print("distillnerf demo: error: --version goes with --data", file=sys.stderr)
        return 2
    options = replace(load_demo_defaults(), out=args.out, data=args.data, bag=args.bag, query=args.query, frames=args.frames,
                          seed=args.seed, size=args.size, checkpoint=args.checkpoint,
                          random_weights=args.random_weights, model_config=args.model_config, device=args.device,
                          frame_timeout=args.frame_timeout)
    if args.data is not None:
        options.version = args.version or "v1.0-mini"
    try:
        with stop_on_signals() as stopped:
            result = run_demo(options)
    except (DemoError, DatasetError) as error:
        print(f"distillnerf demo: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # SIGINT or SIGTERM: the node process was stopped on the way out
        name = stopped.get("signal", "SIGINT")
        print(f"distillnerf demo: stopped by {name}; the node was stopped, no report written", file=sys.stderr)
        return 128 + getattr(signal, name)
    document = write_report(options.out, result.frames, result.info, query_text=options.query)
    index = (Path(options.out) / "index.html").resolve()
    say(f"report: {index}")
    say(f"metrics: {index.parent / 'metrics.json'}")
    say(document["headline"] + (" [RANDOM WEIGHTS]" if options.random_weights else ""))
    return 0


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM ends the demo as Ctrl-C does: a KeyboardInterrupt in the main thread, so every ``finally`` runs
    (the node process is stopped, the replay's ROS context shut down) instead of the process dying at once and
    leaving its node behind. Yields a dict that names the signal."""
    stopped: dict = {}

    def interrupt(signum, frame):
        stopped["signal"] = signal.Signals(signum).name
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopped
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

