"""The synthetic driving world: procedural streets ray-cast into a rig's cameras and LiDAR, with exact ground truth,
written as a nuScenes dataroot (``distillnerf synth``; see docs/synth.md)."""

from distillnerf_train.synth.world import CameraFrame, Keyframe, LidarScan, Occupancy, SyntheticWorld

__all__ = ["CameraFrame", "Keyframe", "LidarScan", "Occupancy", "SyntheticWorld", "generate_dataset"]


def generate_dataset(*args, **kwargs):
    """See :func:`distillnerf_train.synth.dataset.generate_dataset`."""
    from distillnerf_train.synth.dataset import generate_dataset as _generate

    return _generate(*args, **kwargs)
