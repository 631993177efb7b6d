"""World-generation settings: ``config/synth/<name>.yaml`` (see ``config/synth/default.yaml``)."""

from __future__ import annotations

import os

from distillnerf.config_files import load_yaml


def load_synth_config(name_or_path: str | os.PathLike | dict = "default") -> dict:
    """The settings as a dict; a dict is passed through, so callers may tweak a loaded config."""
    if isinstance(name_or_path, dict):
        return name_or_path
    return load_yaml(name_or_path, "synth")
