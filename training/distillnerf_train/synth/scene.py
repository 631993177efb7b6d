"""A synthetic street scene: primitives, ground strips, materials, lighting and the ego's drive.

Everything lives in the *street frame* (x along the street, y to the left, z up, ground at z = 0). The scene maps it
to the nuScenes *global* frame with a per-scene yaw and offset, so ego poses look like real map poses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distillnerf.occ3d import OCC3D_CLASSES

from distillnerf_train.synth.geometry import Primitives

CLASS_ID = {name: index for index, name in enumerate(OCC3D_CLASSES)}
FREE = CLASS_ID["free"]
SKY_LABEL = 255  # 2D semantic label of sky pixels

# Patterns of materials (procedural textures in object-local coordinates, so they are multi-view consistent).
NOISE, STRIPES, CHECKER, WINDOWS, ROAD = 0, 1, 2, 3, 4


@dataclass
class Materials:
    """M materials: base and second colours, pattern, pattern scale and contrast, LiDAR reflectance."""

    base: np.ndarray  # (M, 3)
    second: np.ndarray  # (M, 3)
    pattern: np.ndarray  # (M,) int
    scale: np.ndarray  # (M,)
    contrast: np.ndarray  # (M,)
    reflectance: np.ndarray  # (M,) in [0, 1]

    @staticmethod
    def from_rows(rows: list[dict]) -> "Materials":
        return Materials(
            np.array([r["base"] for r in rows], np.float64).reshape(-1, 3),
            np.array([r.get("second", r["base"]) for r in rows], np.float64).reshape(-1, 3),
            np.array([r.get("pattern", NOISE) for r in rows], np.int32),
            np.array([r.get("scale", 1.0) for r in rows], np.float64),
            np.array([r.get("contrast", 0.1) for r in rows], np.float64),
            np.array([r.get("reflectance", 0.3) for r in rows], np.float64),
        )


@dataclass
class GroundStrips:
    """Bands of the ground plane across the street: y in [edges[i], edges[i+1]) has ``semantic[i]``, ``material[i]``.

    Outside the outermost edges the first/last band continues.
    """

    edges: np.ndarray  # (S + 1,) increasing y
    semantic: np.ndarray  # (S,) uint8
    material: np.ndarray  # (S,) int32

    def lookup(self, y: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.edges, y, side="right") - 1, 0, len(self.semantic) - 1)


@dataclass
class Lighting:
    sun_direction: np.ndarray  # unit vector towards the sun (street frame)
    sun_intensity: float
    ambient: float
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    haze_distance: float


@dataclass
class EgoDrive:
    """The ego drives along +x in a lane, weaving gently so its heading changes."""

    start_x: float
    speed: float
    lane_y: float
    sway_amplitude: float
    sway_period: float
    sway_phase: float

    def pose(self, time: float) -> np.ndarray:
        """4x4 ego-to-street pose at ``time`` seconds after the scene start."""
        omega = 2.0 * np.pi / self.sway_period
        x = self.start_x + self.speed * time
        y = self.lane_y + self.sway_amplitude * np.sin(omega * time + self.sway_phase)
        dy = self.sway_amplitude * omega * np.cos(omega * time + self.sway_phase)
        yaw = np.arctan2(dy, self.speed)
        pose = np.eye(4)
        pose[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
        pose[:2, 3] = [x, y]
        return pose


@dataclass
class ObjectRecord:
    """One annotatable object (nuScenes sample_annotation): its primitives share ``instance``."""

    instance: int
    category: str  # nuScenes category name
    center: np.ndarray  # box centre at time 0, street frame
    size_wlh: np.ndarray  # nuScenes order: width, length, height
    yaw: float
    velocity: np.ndarray

    def center_at(self, time: float) -> np.ndarray:
        return self.center + self.velocity * time


@dataclass
class Scene:
    primitives: Primitives
    materials: Materials
    ground: GroundStrips
    lighting: Lighting
    ego: EgoDrive
    street_to_global: np.ndarray  # 4x4
    markings: list[tuple[float, bool]] = field(default_factory=list)  # (y of a lane line, dashed)
    marking_width: float = 0.15
    dash_length: float = 3.0
    dash_period: float = 9.0
    marking_material: int = 0
    objects: list[ObjectRecord] = field(default_factory=list)
    name: str = "synth"

    def ego_pose_global(self, time: float) -> np.ndarray:
        return self.street_to_global @ self.ego.pose(time)


def flat_scene(primitives: Primitives | None = None, speed: float = 0.0, materials: Materials | None = None,
               name: str = "flat") -> Scene:
    """A bare world: one driveable ground plane, the given primitives, a still (or straight-driving) ego at the
    origin of the street frame, which is also the global frame. For tests and debugging."""
    grey = Materials.from_rows([{"base": (0.5, 0.5, 0.5)}])
    return Scene(primitives if primitives is not None else Primitives.empty(), materials or grey,
                 GroundStrips(np.array([-1e9, 1e9]), np.array([CLASS_ID["driveable_surface"]], np.uint8),
                              np.zeros(1, np.int32)),
                 Lighting(np.array([0.0, 0.6, 0.8]), 0.8, 0.3, np.array([0.3, 0.5, 0.8]), np.array([0.8, 0.8, 0.9]),
                          400.0),
                 EgoDrive(0.0, speed, 0.0, 0.0, 10.0, 0.0), np.eye(4), name=name)
