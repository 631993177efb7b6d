"""``distillnerf bench``: per-stage latency of one 6-camera frame (the paper's Table 7 rows), peak memory and
parameter counts. Median over warm runs; random images on the nuScenes rig; seeded random weights unless a
checkpoint is given (latency does not depend on the weights' values)."""

from __future__ import annotations

import argparse
import json
import sys

#: Table 7 rows of the paper -> the model's timer stages.
TABLE7_ROWS = (
    ("single-view encoding", "encode"),
    ("multi-view fusion", "fusion"),
    ("voxel convolution", "voxel_conv"),
    ("projection + ray march", "render"),
    ("decoder", "decode"),
    ("total", "total"),
)


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help="benchmark the model's per-stage latency",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="cpu", help="model config name or path (default: cpu)")
    p.add_argument("--checkpoint", default=None, help="benchmark this checkpoint instead of random weights")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default: 2)")
    p.add_argument("--runs", type=int, default=5, help="timed runs; the median is reported (default: 5)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)
    return p


def peak_memory_mb(device) -> float:
    """CUDA: peak allocated by torch; CPU: peak resident set size of this process (ru_maxrss)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def benchmark(config_name: str, device: str = "auto", warmup: int = 2, runs: int = 5, checkpoint: str | None = None,
              seed: int = 0) -> dict:
    import statistics

    import numpy as np
    import torch

    from distillnerf.config import load_model_config
    from distillnerf.model import DistillNeRF
    from distillnerf.perception import resolve_device
    from distillnerf.rig import load_rig
    from distillnerf.timing import StageTimer

    dev = resolve_device(device)
    if checkpoint:
        from distillnerf.checkpoint import load_checkpoint

        model, config, _ = load_checkpoint(checkpoint, map_location=dev)
    else:
        config = load_model_config(config_name)
        torch.manual_seed(seed)
        model = DistillNeRF(config).to(dev)
    model.eval()
    width, height = config.input_size
    rig = load_rig("nuscenes").resized(width, height)
    cams = [rig.camera(name) for name in config.camera_names]
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(1, len(cams), 3, height, width, generator=generator).to(dev)
    intrinsics = torch.tensor(np.stack([c.intrinsics for c in cams]), dtype=torch.float32)[None].to(dev)
    cam_to_ego = torch.tensor(np.stack([c.cam_to_ego for c in cams]), dtype=torch.float32)[None].to(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    samples: list[dict[str, float]] = []
    voxels = (0, 0)
    with torch.inference_mode():
        for i in range(warmup + runs):
            timer = StageTimer(dev)
            out = model(images, intrinsics, cam_to_ego, timer=timer)
            timings = timer.result()
            voxels = out["field"].num_voxels
            if i >= warmup:
                samples.append(timings)
    stages = {key: statistics.median(s[key] for s in samples) for _, key in TABLE7_ROWS}
    return {
        "config": config.name,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "cameras": len(cams),
        "input_size": [width, height],
        "render_size": list(config.render_size),
        "warmup": warmup,
        "runs": runs,
        "median_ms": stages,
        "rows": {row: stages[key] for row, key in TABLE7_ROWS},
        "peak_memory_mb": peak_memory_mb(dev),
        "peak_memory_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "process peak RSS",
        "parameters": model.parameter_counts(),
        "voxels": {"coarse": voxels[0], "fine": voxels[1]},
    }


def format_table(result: dict) -> str:
    lines = [f"DistillNeRF bench: config {result['config']} on {result['device_name']} ({result['device']}, "
             f"{result['threads']} threads), {result['cameras']} cameras {result['input_size'][0]}x"
             f"{result['input_size'][1]} -> render {result['render_size'][0]}x{result['render_size'][1]}, "
             f"median of {result['runs']} runs after {result['warmup']} warm-up"]
    for row, ms in result["rows"].items():
        lines.append(f"  {row:<26s} {ms:9.1f} ms")
    lines.append(f"  {'peak memory':<26s} {result['peak_memory_mb']:9.1f} MiB ({result['peak_memory_kind']})")
    params = result["parameters"]
    lines.append("  parameters: " + ", ".join(f"{k} {v / 1e6:.3f} M" for k, v in params.items()))
    lines.append(f"  voxels: coarse {result['voxels']['coarse']}, fine {result['voxels']['fine']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        result = benchmark(args.config, args.device, args.warmup, args.runs, args.checkpoint)
    except (RuntimeError, FileNotFoundError, ValueError) as error:
        print(f"distillnerf bench: {error}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)  # run() may be called in-process (tests)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
