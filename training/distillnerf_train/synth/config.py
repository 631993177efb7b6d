"""World-generation settings: ``config/synth/<name>.yaml`` (see ``config/synth/default.yaml``)."""

from __future__ import annotations

import os

from distillnerf.config_files import load_yaml


#: Object rates (per 100 m) that may be given as a [low, high] range: drawn once per scene, so a dataset mixes
#: quiet and busy streets. A plain number draws nothing (the default world's bytes do not change).
PER_SCENE_RATES = ("parked_cars", "moving_cars", "trucks", "buses", "pedestrians")


def load_synth_config(name_or_path: str | os.PathLike | dict = "default") -> dict:
    """The settings as a dict; a dict is passed through, so callers may tweak a loaded config.

    A file with ``extends: NAME`` starts from that config and overrides it section by section (keys not given
    keep the base's values); unknown sections or keys are errors, so a typo cannot silently do nothing."""
    if isinstance(name_or_path, dict):
        return name_or_path
    data = load_yaml(name_or_path, "synth")
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    base = load_synth_config(base_name)
    for section, values in data.items():
        if section not in base or not isinstance(values, dict) or not isinstance(base[section], dict):
            raise ValueError(f"synth config {name_or_path}: {section!r} is not a section of {base_name!r}")
        unknown = sorted(set(values) - set(base[section]))
        if unknown:
            raise ValueError(f"synth config {name_or_path}: unknown key(s) {unknown} in section {section!r}")
        base[section] = {**base[section], **values}
    return base
