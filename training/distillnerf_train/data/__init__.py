"""Data loading: one nuScenes-format keyframe loader for real nuScenes, the synthetic world and nuscenes-tiny."""

from .combined import training_keyframes
from .config import DataConfig
from .files import open_nuscenes
from .nuscenes import NuScenesKeyframes, load_lidar_points
from .targets import VIRTUAL_VIEWS

__all__ = ["DataConfig", "NuScenesKeyframes", "VIRTUAL_VIEWS", "load_lidar_points", "open_nuscenes", "training_keyframes"]
