"""The ROS package's own configuration folder (node parameters, RViz, demo), for ``distillnerf``'s config lookup.

Registered in setup.py under the ``distillnerf.configs`` entry-point group. The folder is the repository's
top-level ``config/`` in a source checkout; an installed package keeps it in ``share/distillnerf_ros/config``,
which the model library searches anyway, so there the root is None.
"""

from __future__ import annotations

from pathlib import Path

#: A file only the ROS package's folder has: tells the checkout's config/ apart from any other folder of that name.
MARKER = "distillnerf.param.yaml"


def config_root() -> Path | None:
    source = Path(__file__).resolve().parents[1] / "config"
    return source if (source / MARKER).is_file() else None
