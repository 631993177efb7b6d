"""Find the project's configuration files (model configs, rigs, training configs).

All configuration lives in the repository's ``config/`` folder, which the ROS package installs to
``share/distillnerf_ros/config``. A name such as ``cpu`` or ``rigs/nuscenes`` resolves against, in order: the
folders in ``DISTILLNERF_CONFIG_PATH`` (os.pathsep-separated), the source checkout's ``config/``, and the installed
share folder. An existing path is used as given.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

_SOURCE_CONFIG = Path(__file__).resolve().parents[2] / "config"


def config_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("DISTILLNERF_CONFIG_PATH", "").split(os.pathsep) if p]
    dirs.append(_SOURCE_CONFIG)
    dirs.append(Path(sys.prefix) / "share" / "distillnerf_ros" / "config")
    return [d for d in dirs if d.is_dir()]


def resolve_config(name_or_path: str | os.PathLike, subdir: str = "") -> Path:
    """Return the file for ``name_or_path``: an existing path, or ``[subdir/]name[.yaml]`` in a config folder."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = str(name_or_path)
    candidates = [stem, f"{stem}.yaml"]
    searched = []
    for directory in config_dirs():
        for candidate in candidates:
            file = directory / subdir / candidate
            searched.append(str(file))
            if file.is_file():
                return file
    raise FileNotFoundError(
        f"no config file {name_or_path!r} (looked for it as a path and in: {', '.join(searched) or 'no config folder'})"
    )


def load_yaml(name_or_path: str | os.PathLike, subdir: str = "") -> dict:
    file = resolve_config(name_or_path, subdir)
    with open(file, encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ValueError(f"{file}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data
