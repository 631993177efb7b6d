"""What a demo run is asked to do: its options (defaults in ``config/demo.yaml``), which weights the node loads,
and the one error type every demo step raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SYNTH_VERSION = "v1.0-synth"


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and what to do."""


@dataclass
class DemoOptions:
    out: Path = Path("demo_output")
    data: Path | None = None  # a nuScenes dataroot instead of the synthetic world
    version: str = SYNTH_VERSION
    bag: Path | None = None  # a user's bag instead of converting
    query: str = "car"
    frames: int = field(default=3, metadata={"range": (1, None)})
    seed: int = field(default=0, metadata={"range": (0, None)})
    size: str = "400x224"
    checkpoint: str = ""
    random_weights: bool = False
    model_config: str = "tiny"
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    frame_timeout: float = field(default=120.0, metadata={"range": (0.0, None)})
    startup_timeout: float = field(default=180.0, metadata={"range": (0.0, None)})


def load_demo_defaults(name_or_path: str = "demo") -> DemoOptions:
    """The demo's defaults from ``config/demo.yaml`` (or another file); unknown keys and wrong types are errors."""
    from distillnerf.config_files import load_yaml, resolve_config
    from distillnerf.dataclass_config import dataclass_from_dict

    path = resolve_config(name_or_path)
    return dataclass_from_dict(DemoOptions, load_yaml(path), f"demo config {path}")


def node_model_parameters(options: DemoOptions) -> tuple[dict, str]:
    """Node parameters selecting the weights, and the label the report carries."""
    if options.random_weights:
        return ({"model_config": options.model_config, "random_weights": True, "random_seed": options.seed},
                f"random weights (--random-weights: model config {options.model_config}, seed {options.seed})")
    from distillnerf.checkpoint import SHIPPED_CHECKPOINTS

    checkpoint = Path(options.checkpoint) if options.checkpoint else SHIPPED_CHECKPOINTS / "cpu.pt"
    if not checkpoint.is_file():
        raise DemoError(
            f"no trained checkpoint at {checkpoint}. The shipped checkpoint is trained by `distillnerf train` "
            f"(see docs/training.md); pass --checkpoint PATH, or --random-weights to check the pipeline with an "
            f"untrained model (the report is then labelled 'random weights').")
    return {"checkpoint": str(checkpoint)}, f"checkpoint {checkpoint}"


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)
