"""``distillnerf bench``: per-stage latency of one 6-camera frame as the node runs it (``Perception.infer``: the
paper's Table 7 rows, then the Occ3D grid's occupancy and semantics), peak memory, parameter counts, the sparse
field's voxel counts and, where the training package is installed, one training step.

Measures what users run: the checkpoint shipped for the config (``checkpoints/<config>.pt``) by default. Latency
depends on the weights: trained depths spread the lifted points over many more voxels than random weights do, so
random weights are used only when asked (``--random-weights``) or when the config ships no checkpoint, and the
report says which. Median over warm runs; random images on the nuScenes rig."""

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
)
#: What the node runs after the model (Perception.infer): the Occ3D grid's occupancy, visibility and semantics;
#: the total is the node's whole frame, input conversion included.
ROWS = TABLE7_ROWS + (("model (Table 7 total)", "model"), ("occupancy + semantics", "queries"), ("total", "total"))


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help="benchmark the model's per-stage latency",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="cpu", help="model config name or path (default: cpu)")
    p.add_argument("--checkpoint", default=None,
                   help="benchmark this checkpoint (default: the one shipped for --config, if any)")
    p.add_argument("--random-weights", action="store_true",
                   help="seeded random weights instead of the shipped checkpoint (fewer voxels: not what users run)")
    p.add_argument("--amp", action="store_true", help="run the frame under fp16 autocast (CUDA only)")
    p.add_argument("--render-features", action="store_true",
                   help="also render foundation-feature images (training and eval do; the node, through "
                        "Perception, does not: it reads features at occupied voxels only)")
    p.add_argument("--train-runs", type=int, default=3,
                   help="timed training steps (forward, losses, backward, Adam) on one synthetic keyframe; 0 = skip "
                        "(needs the training package; default: 3)")
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


def training_step_plugins():
    """Training-step benchmarks registered by other packages (the training package) under ``distillnerf.bench``."""
    from importlib.metadata import entry_points

    return list(entry_points(group="distillnerf.bench"))


def benchmark(config_name: str, device: str = "auto", warmup: int = 2, runs: int = 5, checkpoint: str | None = None,
              seed: int = 0, random_weights: bool = False, train_runs: int = 0, amp: bool = False,
              render_features: bool = False) -> dict:
    import statistics

    import numpy as np
    import torch

    from distillnerf.config import load_model_config
    from distillnerf.model import DistillNeRF
    from distillnerf.perception import Perception, resolve_device
    from distillnerf.rig import load_rig

    from distillnerf.checkpoint import load_checkpoint, shipped_checkpoint

    dev = resolve_device(device)
    if amp and dev.type != "cuda":
        raise ValueError("--amp (fp16 autocast) needs a CUDA device")
    if checkpoint is None and not random_weights:
        shipped = shipped_checkpoint(config_name)
        checkpoint = str(shipped) if shipped else None
    if checkpoint and not random_weights:
        perception = Perception.from_checkpoint(checkpoint, device=str(dev))
        weights = f"checkpoint {checkpoint}"
    else:
        config = load_model_config(config_name)
        torch.manual_seed(seed)
        perception = Perception(DistillNeRF(config), config, dev)
        weights = f"random weights (seed {seed}): fewer voxels than trained weights, not what users run"
    perception.render_features = render_features
    model, config = perception.model, perception.config
    width, height = config.input_size
    rig = load_rig("nuscenes").resized(width, height)
    cams = [rig.camera(name) for name in config.camera_names]
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(len(cams), height, width, 3, generator=generator).mul(255.0).round().to(torch.uint8).numpy()
    intrinsics = np.stack([c.intrinsics for c in cams]).astype(np.float32)
    cam_to_ego = np.stack([c.cam_to_ego for c in cams]).astype(np.float32)
    with torch.inference_mode():  # the field's size, untimed (the node's path does not return the field)
        inputs = perception._prepare(list(images), intrinsics, cam_to_ego, None)
        voxels = model(*inputs)["field"].num_voxels
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    samples: list[dict[str, float]] = []
    with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
        for i in range(warmup + runs):
            timings = perception.infer(list(images), intrinsics, cam_to_ego).timings_ms
            if i >= warmup:
                samples.append(timings)
    for timings in samples:
        timings["model"] = sum(timings[key] for _, key in TABLE7_ROWS)
    stages = {key: statistics.median(s[key] for s in samples) for _, key in ROWS}
    train_step = None
    if train_runs > 0:
        plugins = training_step_plugins()
        train_step = {"unavailable": "the training package is not installed"} if not plugins else \
            plugins[0].load()(model, config, dev, warmup=1, runs=train_runs)
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
        "rows": {row: stages[key] for row, key in ROWS},
        "peak_memory_mb": peak_memory_mb(dev),
        "peak_memory_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "process peak RSS",
        "parameters": model.parameter_counts(),
        "voxels": {"coarse": voxels[0], "fine": voxels[1]},
        "weights": weights,
        "precision": "fp16 autocast" if amp else cnn_precision_label(config.cnn_precision, dev),
        "kernels": kernels_in_use(dev),
        "rendered_features": render_features and config.feature_head,
        "training_step": train_step,
    }


def cnn_precision_label(cnn_precision: str, device) -> str:
    """What the frame computed in: the image CNNs' precision as it applied on this device, float32 elsewhere."""
    from distillnerf.precision import precision_in_effect

    if precision_in_effect(cnn_precision, device) == "bfloat16":
        return "image CNNs bf16 autocast, field fp32"
    return "fp32 (cnn_precision bfloat16 is not native here)" if cnn_precision == "bfloat16" else "fp32"


def kernels_in_use(device) -> str:
    """Which implementation the sparse convolutions and the inference march ran on (latency depends on it)."""
    from distillnerf import cpu_kernels

    if device.type != "cpu":
        return "spconv implicit GEMM and the torch march on CUDA"
    if cpu_kernels.available():
        return ("compiled CPU kernels (distillnerf._cpu_kernels): sparse convolutions up to 64 channels "
                "(wider: spconv Native), inference march")
    return f"spconv Native and the torch march: {cpu_kernels.ERROR}"


def format_table(result: dict) -> str:
    lines = [f"DistillNeRF bench: config {result['config']} on {result['device_name']} ({result['device']}, "
             f"{result['threads']} threads, {result['precision']}), {result['cameras']} cameras {result['input_size'][0]}x"
             f"{result['input_size'][1]} -> render {result['render_size'][0]}x{result['render_size'][1]}, "
             f"median of {result['runs']} runs after {result['warmup']} warm-up"]
    for row, ms in result["rows"].items():
        lines.append(f"  {row:<26s} {ms:9.1f} ms")
    lines.append(f"  {'peak memory':<26s} {result['peak_memory_mb']:9.1f} MiB ({result['peak_memory_kind']})")
    params = result["parameters"]
    lines.append("  parameters: " + ", ".join(f"{k} {v / 1e6:.3f} M" for k, v in params.items()))
    lines.append(f"  voxels: coarse {result['voxels']['coarse']}, fine {result['voxels']['fine']}")
    step = result.get("training_step")
    if step and "median_ms" in step:
        lines.append(f"  {'training step':<26s} {step['median_ms']:9.1f} ms (forward, {step['losses']} losses, "
                     f"backward, Adam; median of {step['runs']}{', fp16 autocast' if step['amp'] else ''})")
    elif step:
        lines.append(f"  training step: unavailable ({step['unavailable']})")
    lines.append(f"  weights: {result['weights']}; rendered feature images: "
                 f"{'yes' if result['rendered_features'] else 'no (as the node runs)'}")
    lines.append(f"  kernels: {result['kernels']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        result = benchmark(args.config, args.device, args.warmup, args.runs, args.checkpoint,
                           random_weights=args.random_weights, train_runs=args.train_runs, amp=args.amp,
                           render_features=args.render_features)
    except (RuntimeError, FileNotFoundError, ValueError) as error:
        print(f"distillnerf bench: {error}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)  # run() may be called in-process (tests)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
