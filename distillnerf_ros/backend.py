"""What the node needs from the model, and how it loads one from its parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

from distillnerf_ros.parameters import NodeParameters


class StartupError(RuntimeError):
    """A configuration the node cannot start with; ``main`` logs it and exits non-zero."""


class InferenceBackend(Protocol):
    """``distillnerf.perception.Perception`` is one (tests and the benchmark pass others). ``query`` raises
    ``distillnerf.perception.QueryUnavailable`` when it cannot answer (no text encoder, no result yet)."""

    camera_names: Sequence[str]
    input_size: tuple[int, int]
    render_size: tuple[int, int]
    device: str

    def warmup(self) -> None: ...

    def infer(self, images, intrinsics, cam_to_ego, valid=None, occupancy_threshold=None): ...

    def query(self, text: str): ...


def resolve_device(requested: str) -> tuple[str, str | None]:
    """(device, warning) by the model library's rule; ``cuda`` without CUDA is a StartupError."""
    from distillnerf.perception import resolve_device as library_rule

    try:
        device = library_rule(requested)
    except RuntimeError as error:
        raise StartupError(f"{error}; use device:=auto or device:=cpu") from None
    if requested == "auto" and device.type == "cpu":
        return "cpu", "CUDA is not available: running the model on the CPU (slow); set device:=cpu to silence this"
    return str(device), None


def load_backend(params: NodeParameters, device: str) -> InferenceBackend:
    from distillnerf.checkpoint import SHIPPED_CHECKPOINTS
    from distillnerf.perception import Perception

    if params.random_weights:
        if not params.model_config:
            raise StartupError("random_weights: true needs model_config (e.g. tiny)")
        return Perception.from_config(params.model_config, device=device, seed=params.random_seed)
    checkpoint = Path(params.checkpoint) if params.checkpoint else SHIPPED_CHECKPOINTS / "cpu.pt"
    if not checkpoint.is_file():
        raise StartupError(f"checkpoint {checkpoint} not found: set the checkpoint parameter (or, for tests only, "
                           "random_weights: true with a model_config)")
    return Perception.from_checkpoint(str(checkpoint), device=device)
