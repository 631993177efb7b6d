"""``SyntheticWorld``: one seeded street scene seen through a rig's cameras and LiDAR, with exact ground truth.

Times are seconds after the scene's first LiDAR keyframe. Cameras fire ``camera_delays()`` after the LiDAR (as in
nuScenes), each with the ego pose of its own time; moving objects move between any two times.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from distillnerf.rig import CameraCalibration, Rig, SensorExtrinsics, load_rig
from distillnerf_train.synth.config import SynthSource, load_synth_config
from distillnerf_train.synth.layout import build_scene
from distillnerf_train.synth.occupancy import camera_mask, grid_from_config, lidar_mask, semantics
from distillnerf_train.synth.raycast import Region, cast, nearest_hits
from distillnerf_train.synth.scene import Scene
from distillnerf_train.synth.sensors import LidarPattern, camera_directions, camera_regions
from distillnerf_train.synth.shading import lidar_intensity, shade


@dataclass
class CameraFrame:
    """One rendered image and its per-pixel ground truth (depth is camera z in metres, 0 where sky)."""

    name: str
    time: float
    calibration: CameraCalibration
    ego_pose: np.ndarray  # ego -> global at ``time``
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 camera z
    distance: np.ndarray  # (H, W) float32 distance along the ray
    semantic: np.ndarray  # (H, W) uint8 Occ3D class, 255 for sky
    instance: np.ndarray  # (H, W) int32 object id, 0 for none
    sky: np.ndarray  # (H, W) bool


@dataclass
class LidarScan:
    """One LiDAR sweep (instantaneous at ``time``) in the LiDAR frame, with the rays it traced."""

    time: float
    extrinsics: SensorExtrinsics
    ego_pose: np.ndarray
    points: np.ndarray  # (N, 5) float32: x, y, z, intensity, ring (nuScenes .pcd.bin layout)
    semantic: np.ndarray  # (N,) uint8
    instance: np.ndarray  # (N,) int32
    ranges: np.ndarray  # (beams, steps) metres, inf where no return


@dataclass
class Occupancy:
    semantics: np.ndarray  # (X, Y, Z) uint8
    mask_lidar: np.ndarray
    mask_camera: np.ndarray


@dataclass
class Keyframe:
    time: float
    lidar: LidarScan
    cameras: list[CameraFrame]
    occupancy: Occupancy


class SyntheticWorld:
    """A procedural street (from ``seed``) and a rig; render any sensor at any time.

    ``size`` (width, height) resamples every camera of the rig, scaling its intrinsics. ``scene`` replaces the
    procedural street (tests build their own).
    """

    def __init__(self, seed: int | list[int] = 0, config: SynthSource = "default",
                 rig: str | os.PathLike | Rig = "nuscenes", size: tuple[int, int] | None = None,
                 drive_seconds: float = 10.0, scene: Scene | None = None, name: str = "synth"):
        self.config = load_synth_config(config)
        self.rig = rig if isinstance(rig, Rig) else load_rig(rig)
        if size is not None:
            self.rig = self.rig.resized(int(size[0]), int(size[1]))
        self.scene = scene if scene is not None else build_scene(
            np.random.default_rng(seed), self.config, drive_seconds, name)
        self.lidar_pattern = LidarPattern.from_config(self.config.lidar)
        self.grid = grid_from_config(self.config.occupancy)
        default_mount = self.config.lidar.default_mount
        self.lidar_extrinsics = self.rig.lidar or SensorExtrinsics(
            "LIDAR_TOP", np.asarray(default_mount.translation, float), np.asarray(default_mount.rotation_wxyz, float))
        self._directions: dict[str, np.ndarray] = {}

    # Poses and times.
    def ego_to_street(self, time: float) -> np.ndarray:
        return self.scene.ego.pose(time)

    def ego_pose(self, time: float) -> np.ndarray:
        """Ego -> global at ``time``."""
        return self.scene.ego_pose_global(time)

    def camera_delays(self) -> dict[str, float]:
        """Seconds after the LiDAR at which each camera fires, spread over the rig's camera order."""
        first, last = self.config.timing.camera_delay_ms
        count = len(self.rig.cameras)
        delays = np.linspace(first, last, count) / 1000.0 if count > 1 else [first / 1000.0]
        return {cam.name: float(d) for cam, d in zip(self.rig.cameras, delays)}

    # Sensors.
    def render_camera(self, camera: str | CameraCalibration, time: float) -> CameraFrame:
        """Image and per-pixel truth of one camera (a rig camera name or a calibration) at ``time``."""
        cal = self.rig.camera(camera) if isinstance(camera, str) else camera
        key = f"{cal.name}:{cal.width}x{cal.height}:{cal.intrinsics.tobytes().hex()}"
        if key not in self._directions:
            self._directions[key] = camera_directions(cal.intrinsics, cal.width, cal.height)
        dirs_cam = self._directions[key]
        cam_to_street = self.ego_to_street(time) @ cal.cam_to_ego
        dirs = dirs_cam @ cam_to_street[:3, :3].T
        origin = cam_to_street[:3, 3]
        cfg = self.config.camera
        regions = camera_regions(self.scene.primitives, time, np.linalg.inv(cam_to_street), cal.intrinsics, cal.width,
                                 cal.height, cfg.near, cfg.far)
        hits = cast(self.scene, time, origin, dirs, regions, cfg.near, cfg.far)
        rgb = np.round(shade(self.scene, hits, dirs) * 255.0).astype(np.uint8)
        sky = ~hits.hit
        distance = np.where(sky, 0.0, hits.distance).astype(np.float32)
        depth = (distance * dirs_cam[..., 2]).astype(np.float32)
        return CameraFrame(cal.name, time, cal, self.ego_pose(time), rgb, depth, distance, hits.semantic,
                           hits.instance, sky)

    def ray_distances(self, frame: CameraFrame, points_cam: np.ndarray) -> np.ndarray:
        """Exact distance to the first surface along the rays from ``frame``'s camera towards camera-frame points
        (inf where none), with the frame's own culling: each ray is tested against the primitives whose pixel
        rectangle holds its projection."""
        cal = frame.calibration
        cam_to_street = self.ego_to_street(frame.time) @ cal.cam_to_ego
        dirs_cam = points_cam / np.linalg.norm(points_cam, axis=1, keepdims=True)
        u = points_cam[:, 0] / points_cam[:, 2] * cal.intrinsics[0, 0] + cal.intrinsics[0, 2]
        v = points_cam[:, 1] / points_cam[:, 2] * cal.intrinsics[1, 1] + cal.intrinsics[1, 2]
        cfg = self.config.camera
        regions = []
        for region in camera_regions(self.scene.primitives, frame.time, np.linalg.inv(cam_to_street), cal.intrinsics,
                                     cal.width, cal.height, cfg.near, cfg.far):
            rows, cols = region.rows, region.cols
            rays = np.flatnonzero((u >= cols.start) & (u < cols.stop) & (v >= rows.start) & (v < rows.stop))
            if rays.size:
                regions.append(Region(region.index, slice(0, 1), rays))
        dirs = (dirs_cam @ cam_to_street[:3, :3].T)[None]
        distance, _ = nearest_hits(self.scene, frame.time, cam_to_street[:3, 3], dirs, regions, cfg.near, cfg.far)
        return distance[0]

    def scan_lidar(self, time: float) -> LidarScan:
        """One LiDAR sweep at ``time``: returns in the LiDAR frame, their labels, and every ray's range."""
        pattern = self.lidar_pattern
        lidar_to_street = self.ego_to_street(time) @ self.lidar_extrinsics.sensor_to_ego
        dirs_lidar = pattern.directions()
        dirs = dirs_lidar @ lidar_to_street[:3, :3].T
        regions = pattern.regions(self.scene.primitives, time, np.linalg.inv(lidar_to_street))
        hits = cast(self.scene, time, lidar_to_street[:3, 3], dirs, regions, pattern.min_range, pattern.max_range)
        intensity = lidar_intensity(self.scene, hits, dirs)
        ring = np.broadcast_to(np.arange(len(pattern.elevations))[:, None], hits.distance.shape)
        # Firing order: azimuth by azimuth, all beams of a firing together (as a spinning sensor reports them).
        hit = hits.hit.T
        xyz = (dirs_lidar * np.where(hits.hit, hits.distance, 0.0)[..., None]).transpose(1, 0, 2)[hit]
        points = np.concatenate([xyz, intensity.T[hit][:, None], ring.T[hit][:, None]], axis=1).astype(np.float32)
        ranges = np.where(hits.hit, hits.distance, np.inf)
        return LidarScan(time, self.lidar_extrinsics, self.ego_pose(time), points, hits.semantic.T[hit],
                         hits.instance.T[hit], ranges)

    def occupancy(self, time: float, cameras: list[CameraFrame], lidar: LidarScan) -> Occupancy:
        """Occ3D labels in the ego frame at ``time`` (the LiDAR time), with masks from these sensor frames."""
        lidar_to_ego = lidar.extrinsics.sensor_to_ego
        dirs = self.lidar_pattern.directions().reshape(-1, 3) @ lidar_to_ego[:3, :3].T
        with self._pool() as pool:
            sem = pool.submit(semantics, self.scene, time, self.ego_to_street(time), self.grid,
                              self.config.occupancy.subsamples)
            mask_cam = pool.submit(camera_mask, self.grid, self.ego_pose(time), cameras, self.ray_distances)
            mask_lid = pool.submit(lidar_mask, self.grid, lidar_to_ego[:3, 3], dirs, lidar.ranges.reshape(-1),
                                   self.lidar_pattern.max_range)
            return Occupancy(sem.result(), mask_lid.result(), mask_cam.result())

    def keyframe(self, time: float) -> Keyframe:
        """Everything of one keyframe: the LiDAR at ``time``, each camera at its delay, and the occupancy."""
        with self._pool() as pool:
            lidar = pool.submit(self.scan_lidar, time)
            cameras = list(pool.map(lambda item: self.render_camera(item[0], time + item[1]),
                                    self.camera_delays().items()))
            lidar = lidar.result()
        return Keyframe(time, lidar, cameras, self.occupancy(time, cameras, lidar))

    def _pool(self) -> ThreadPoolExecutor:
        """Threads for independent sensors (numpy releases the GIL in its array work); results do not depend on
        the number of threads."""
        return ThreadPoolExecutor(max_workers=self.config.compute.threads)
