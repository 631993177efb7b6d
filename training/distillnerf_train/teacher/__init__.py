"""The offline per-scene NeRF teacher (EmerNeRF's role in DistillNeRF): dense depth, sky masks, virtual views."""

from .field import FieldConfig, SceneContraction, TeacherField
from .optimise import LossWeights, OptimConfig, TeacherOptimiser, line_of_sight_loss
from .pipeline import TeacherConfig, run_scene
from .render import RenderConfig, render_image, render_rays
from .scene import SceneRays, load_scene, shard, virtual_cam_to_ego

__all__ = ["FieldConfig", "LossWeights", "OptimConfig", "RenderConfig", "SceneContraction", "SceneRays",
           "TeacherConfig", "TeacherField", "TeacherOptimiser", "line_of_sight_loss", "load_scene", "render_image",
           "render_rays", "run_scene", "shard", "virtual_cam_to_ego"]
