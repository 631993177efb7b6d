"""Find the project's configuration files (model configs, rigs, training configs).

Each package ships its own configuration inside itself: the model library in ``distillnerf/configs/`` (``model/``,
``rigs/``, ``foundation/``), the training package in ``distillnerf_train/configs/`` (``train/``, ``synth/``,
``eval/``), the ROS package in the repository's top-level ``config/`` (node parameters, RViz, demo). A name such as
``cpu`` or ``rigs/nuscenes`` resolves against, in order:

1. the folders in ``DISTILLNERF_CONFIG_PATH`` (os.pathsep-separated), so a user can override any file;
2. the config roots that installed packages register in the ``distillnerf.configs`` entry-point group, in
   entry-point name order. An entry point names a package (its ``configs`` folder is the root) or a callable
   returning the root (a path, or None for none). The model library's own root is always searched, even where
   its entry point is missing, so the library alone finds its configs;
3. the ROS share folder ``share/distillnerf_ros/config`` of this Python prefix (where the ROS package installs every
   package's configs for ROS users).

An existing path is used as given. The model library never imports the packages that register roots: it loads
their entry points, as ``distillnerf.cli`` does for commands.
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path

import yaml

ENTRY_POINT_GROUP = "distillnerf.configs"
ENVIRONMENT_VARIABLE = "DISTILLNERF_CONFIG_PATH"


def own_config_root() -> Path | None:
    """The model library's own configs (``distillnerf/configs``), found through importlib.resources."""
    return _as_path(resources.files("distillnerf") / "configs")


def _as_path(root) -> Path | None:
    # Regular packages on disk give pathlib paths; a zipped package's Traversable has no folder to search.
    return Path(root) if isinstance(root, (str, os.PathLike)) else None


def _root_of(entry_point) -> Path | None:
    target = entry_point.load()
    root = target() if callable(target) else resources.files(target) / "configs"
    return None if root is None else _as_path(root)


def _unique(paths: list[Path]) -> list[Path]:
    seen, unique = set(), []
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def registered_config_roots() -> tuple[list[Path], dict[str, str]]:
    """Roots registered under ``distillnerf.configs`` (model library's own included) and those that failed to load."""
    roots: list[Path] = []
    unavailable: dict[str, str] = {}
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        try:
            root = _root_of(entry_point)
        except ImportError as error:  # e.g. a package's metadata is left but the package is gone
            unavailable[entry_point.name] = f"{type(error).__name__}: {error}"
            continue
        if root is not None:
            roots.append(root)
    own = own_config_root()
    if own is not None:
        roots.append(own)
    return _unique(roots), unavailable


def config_dirs() -> list[Path]:
    """Every existing config folder, in search order."""
    dirs = [Path(p) for p in os.environ.get(ENVIRONMENT_VARIABLE, "").split(os.pathsep) if p]
    dirs += registered_config_roots()[0]
    dirs.append(Path(sys.prefix) / "share" / "distillnerf_ros" / "config")
    return _unique([d for d in dirs if d.is_dir()])


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
    unavailable = registered_config_roots()[1]
    broken = f"; config roots that failed to load: {unavailable}" if unavailable else ""
    raise FileNotFoundError(
        f"no config file {name_or_path!r} (looked for it as a path and in: {', '.join(searched) or 'no config folder'}"
        f"{broken})"
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
