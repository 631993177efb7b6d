"""``make gpu-check``: everything that needs a CUDA GPU, in one run that writes one JSON report.

1. the CUDA tests (``pytest -m cuda``);
2. ``distillnerf bench`` of the ``cpu`` model (shipped checkpoint) and the ``paper`` model (random weights: none is
   shipped) on CUDA, in fp32 and under fp16 autocast;
3. 50 AMP training steps of ``paper`` on a synthetic dataset generated for the purpose
   (``distillnerf_train/configs/train/gpu_check.yaml``).

Sized for under 8 minutes on one H100/H200. Without CUDA it exits 2 with one line. Commit the report's figures with
the device it names (``device_name``).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def run_cuda_tests() -> dict:
    started = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"],
                             capture_output=True, text=True)
    lines = [line for line in process.stdout.splitlines() if line.strip()]
    return {"returncode": process.returncode, "summary": lines[-1] if lines else "",
            "seconds": round(time.perf_counter() - started, 1)}


def run_benches() -> list[dict]:
    from distillnerf.commands.bench import benchmark

    results = []
    for config in ("cpu", "paper"):
        for amp in (False, True):
            result = benchmark(config, "cuda", warmup=3, runs=10, amp=amp)  # as the node runs it
            results.append({key: result[key] for key in ("config", "precision", "rows", "peak_memory_mb", "voxels",
                                                         "weights", "device_name")})
    return results


def run_training(steps: int) -> dict:
    import torch

    from .config import load_train_config
    from .features.semantic import write_semantic_targets
    from .synth.dataset import generate_dataset
    from .trainer import Trainer

    import distillnerf

    config = load_train_config("gpu_check")
    with tempfile.TemporaryDirectory(prefix="distillnerf-gpu-check-") as root:
        data = Path(root) / "synth"
        generate_dataset(data, scenes=2, frames=3, seed=0, size=(228, 128))
        write_semantic_targets(data, "clip_tiny", Path(distillnerf.__file__).parent / "checkpoints" /
                               "clip_tiny_seed0.pt")
        config = replace(config, data=replace(config.data, dataroot=str(data)),
                         train=replace(config.train, max_steps=steps, out=str(Path(root) / "run")))
        trainer = Trainer(config)
        torch.cuda.synchronize()
        summary = trainer.train()
        trainer.close()
    return {"steps": summary["step"], "seconds": round(summary["seconds"], 2),
            "ms_per_step": round(1000.0 * summary["seconds"] / max(1, steps), 1), "final_loss": summary["loss"],
            "amp": trainer.amp, "model": config.model}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", default="gpu_check.json", help="JSON report to write (default gpu_check.json)")
    parser.add_argument("--train-steps", type=int, default=50)
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: CUDA is not available to torch {torch.__version__} (no GPU or driver): nothing checked",
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    report = {"device_name": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "cuda": torch.version.cuda, "host": platform.node(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    report["cuda_tests"] = run_cuda_tests()
    report["bench"] = run_benches()
    report["training"] = run_training(args.train_steps)
    report["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if report["cuda_tests"]["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
