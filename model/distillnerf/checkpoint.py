"""Checkpoints: one file holding the model weights, the config it was built with, and free-form extras.

Written atomically (temporary file in the same folder, then ``os.replace``) so a crash never leaves a truncated
checkpoint under the real name. Extras may hold anything picklable (optimizer state, the feature reducer, a text
encoder spec), so loading unpickles: load only checkpoints you trust.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from distillnerf.config import ModelConfig, config_from_dict

FORMAT = "distillnerf-checkpoint"
VERSION = 1


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` so that a crash at any moment leaves the old file or the new one under ``path``, never a torn
    one: a temporary file in the same folder, fsync, ``os.replace``, then fsync of the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


#: Checkpoints shipped inside the model library, one per model config that has one (``<config>.pt``).
SHIPPED_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


def shipped_checkpoint(config_name: str = "cpu") -> Path | None:
    """The checkpoint shipped inside the model library for a model config (``checkpoints/<name>.pt``), if any."""
    path = SHIPPED_CHECKPOINTS / f"{config_name}.pt"
    return path if path.is_file() else None


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, config: ModelConfig, extras: dict | None = None
                    ) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extras": dict(extras or {}),
    }
    atomic_torch_save(payload, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """-> (model in eval mode, config, extras). Raises ValueError naming the file when it is not a checkpoint."""
    from distillnerf.model import DistillNeRF

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # truncated, corrupt or not a torch file at all
        raise ValueError(f"{path}: not a readable DistillNeRF checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a DistillNeRF checkpoint (missing format marker {FORMAT!r})")
    if payload.get("version", 0) > VERSION:
        raise ValueError(f"{path}: checkpoint version {payload['version']} is newer than this library ({VERSION})")
    try:
        config = config_from_dict(payload["config"])
        # The weights come from the checkpoint: do not spend time loading the backbone's own pretrained file.
        model = DistillNeRF(replace(config, backbone_pretrained=False))
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError) as error:
        raise ValueError(f"{path}: checkpoint does not match the model ({type(error).__name__}: {error})") from error
    model.to(map_location).eval()
    return model, config, payload.get("extras", {})


def check_config_changes(config: ModelConfig, saved: ModelConfig, changes, label: str, hint: str) -> None:
    """``config`` may differ from ``saved`` (a checkpoint's) in inference settings and in the settings named in
    ``changes`` (deliberate, such as a new grid geometry or candidate spacing); anything else is a ValueError that
    names ``label`` and, as the way to allow a deliberate change, ``hint``. So is a name that is no model setting."""
    unknown = sorted(set(changes) - set(config.to_dict()))
    if unknown:
        raise ValueError(f"{label}: {unknown} are not model config settings")
    changed = [k for k in config.weights_layout_differences(saved) if k not in set(changes)]
    if changed:
        raise ValueError(f"{label}: model config {config.name!r} differs from the checkpoint's ({saved.name!r}) in "
                         f"{changed}, not only in inference settings (list a deliberate change in {hint})")


def load_fitting_weights(target: torch.nn.Module, state_dict: dict, label: str) -> None:
    """``target.load_state_dict(state_dict)``, or a ValueError naming ``label`` when the weights do not fit (a
    deliberate config change that altered a layer's shape)."""
    try:
        target.load_state_dict(state_dict)
    except RuntimeError as error:
        raise ValueError(f"{label}: its weights do not fit this model ({str(error).splitlines()[0]})") from error


def export_checkpoint(source: str | os.PathLike, destination: str | os.PathLike, config: ModelConfig,
                      changes=()) -> Path:
    """Write ``source``'s weights and extras to ``destination`` under ``config``, whose weights layout must match
    the checkpoint's: how a trained checkpoint takes the inference settings (occupancy threshold, sub-samples)
    calibrated after training. ``changes``: other settings that may differ on purpose (the weights must still
    fit). The weights are copied unchanged."""
    model, saved, extras = load_checkpoint(source)
    check_config_changes(config, saved, changes, str(source), "--changes")
    config = replace(config, backbone_pretrained=saved.backbone_pretrained)
    if changes:
        from distillnerf.model import DistillNeRF

        rebuilt = DistillNeRF(replace(config, backbone_pretrained=False))
        load_fitting_weights(rebuilt, model.state_dict(), f"{source} under model config {config.name!r}")
        model = rebuilt.eval()
    return save_checkpoint(destination, model, config, extras)
