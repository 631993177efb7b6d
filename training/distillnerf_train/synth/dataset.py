"""Write synthetic scenes as a nuScenes dataroot that the official devkit loads, with exact ground truth beside it.

Layout of ``out``::

    v1.0-synth/*.json                          the 13 nuScenes tables (sorted keys, deterministic tokens)
    samples/CAM_*/<log>__<CAM>__<us>.jpg       keyframe images; samples/LIDAR_TOP/...pcd.bin (x, y, z, i, ring)
    sweeps/CAM_*/...jpg                        12 Hz camera sweeps between keyframes (``sweeps=True``)
    gt/depth/<sample_data_token>.npz           depth (camera z, float32, 0 = sky), semantic (uint8, 255 = sky),
                                               instance (int32), sky (bool) for every camera sample_data
    gt/lidar/<sample_data_token>.npz           semantic and instance of every LiDAR point
    gt/occ3d/<scene_name>/<sample_token>/labels.npz   Occ3D semantics, mask_lidar, mask_camera

The same arguments give the same bytes: every random draw comes from the seed, tokens are hashes of the seed and
the record's identity, timestamps come from the config, and JPEG and zip settings are fixed.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import time as wallclock
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from distillnerf.rig import Rig, load_rig, matrix_to_quaternion
from distillnerf_train.synth.config import SynthConfig, SynthSource, load_synth_config
from distillnerf_train.synth.world import CameraFrame, Keyframe, SyntheticWorld

LIDAR_CHANNEL = "LIDAR_TOP"
VISIBILITY = [("1", "v0-40", "visibility of whole object is between 0 and 40%"),
              ("2", "v40-60", "visibility of whole object is between 40 and 60%"),
              ("3", "v60-80", "visibility of whole object is between 60 and 80%"),
              ("4", "v80-100", "visibility of whole object is between 80 and 100%")]
ATTRIBUTES = ["vehicle.moving", "vehicle.parked", "pedestrian.moving", "pedestrian.standing"]


def make_token(seed: int, *parts) -> str:
    """Deterministic 32-hex token of a record, from the dataset seed and the record's identity."""
    return hashlib.md5("/".join(str(p) for p in (seed, *parts)).encode()).hexdigest()


def scene_seed(seed: int, index: int) -> list[int]:
    """The world seed of scene ``index`` of a dataset made with ``seed`` (``SyntheticWorld(seed=...)``)."""
    return [int(seed), int(index)]


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed`` but byte-reproducible (fixed zip timestamps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())
    os.replace(tmp, path)


def _pose_record(token: str, timestamp: int, pose: np.ndarray) -> dict:
    return {"token": token, "timestamp": timestamp, "rotation": [float(v) for v in matrix_to_quaternion(pose[:3, :3])],
            "translation": [float(v) for v in pose[:3, 3]]}


def _yaw_quaternion(yaw: float) -> list[float]:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


class _Tables:
    def __init__(self):
        self.tables: dict[str, list[dict]] = {name: [] for name in (
            "attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
            "sample_annotation", "sample_data", "scene", "sensor", "visibility")}

    def add(self, table: str, record: dict) -> dict:
        self.tables[table].append(record)
        return record

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, records in self.tables.items():
            with open(folder / f"{name}.json", "w", encoding="utf-8") as handle:
                json.dump(records, handle, indent=1, sort_keys=True)
                handle.write("\n")


def _link(records: list[dict]) -> None:
    """Fill prev/next along a time-ordered list of records."""
    for a, b in zip(records, records[1:]):
        a["next"], b["prev"] = b["token"], a["token"]


def _visibility(world: SyntheticWorld, keyframe: Keyframe, obj) -> str:
    """nuScenes-style visibility level: share of 9 points of the box (centre, shrunk corners) seen in a camera."""
    t = keyframe.time
    center = obj.center_at(t)
    w, l, h = obj.size_wlh * 0.4
    c, s = np.cos(obj.yaw), np.sin(obj.yaw)
    offsets = np.array([[0, 0, 0]] + [[sx * l, sy * w, sz * h] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    points = np.stack([c * offsets[:, 0] - s * offsets[:, 1], s * offsets[:, 0] + c * offsets[:, 1], offsets[:, 2]],
                      -1) + center
    seen = np.zeros(len(points), bool)
    for frame in keyframe.cameras:
        cal = frame.calibration
        street_to_cam = np.linalg.inv(world.ego_to_street(frame.time) @ cal.cam_to_ego)
        moved = points + obj.velocity * (frame.time - t)
        p = moved @ street_to_cam[:3, :3].T + street_to_cam[:3, 3]
        front = p[:, 2] > 0.1
        uv = np.floor(p[:, :2] / np.where(front, p[:, 2], 1.0)[:, None] * np.diag(cal.intrinsics)[:2]
                      + cal.intrinsics[:2, 2]).astype(int)
        ok = front & (uv[:, 0] >= 0) & (uv[:, 0] < cal.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cal.height)
        seen[ok] |= frame.instance[uv[ok, 1], uv[ok, 0]] == obj.instance
    fraction = seen.mean()
    return "1" if fraction < 0.4 else "2" if fraction < 0.6 else "3" if fraction < 0.8 else "4"


def _camera_files(frame: CameraFrame, path: Path, gt_path: Path, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame.rgb).save(path, format="JPEG", quality=quality)
    save_npz(gt_path, depth=frame.depth, semantic=frame.semantic, instance=frame.instance, sky=frame.sky)


@dataclass
class _Run:
    """What every scene of one dataset shares: where it goes, its settings, the tables and the shared records."""

    out: Path
    seed: int
    cfg: SynthConfig
    rig: Rig
    sweeps_per_keyframe: int  # 1 = keyframes only
    tables: _Tables = field(default_factory=_Tables)
    sensor_tokens: dict = field(default_factory=dict)
    attribute_tokens: dict = field(default_factory=dict)
    category_tokens: dict = field(default_factory=dict)
    map_record: dict = field(default_factory=dict)

    @property
    def channels(self) -> list[str]:
        return list(self.rig.camera_names) + [LIDAR_CHANNEL]

    def write_shared_tables(self) -> None:
        T, seed = self.tables.add, self.seed
        self.sensor_tokens = {ch: make_token(seed, "sensor", ch) for ch in self.channels}
        for ch in self.channels:
            modality = "lidar" if ch == LIDAR_CHANNEL else "camera"
            T("sensor", {"token": self.sensor_tokens[ch], "channel": ch, "modality": modality})
        for tok, level, description in VISIBILITY:
            T("visibility", {"token": tok, "level": level, "description": description})
        self.attribute_tokens = {name: make_token(seed, "attribute", name) for name in ATTRIBUTES}
        for name, tok in self.attribute_tokens.items():
            T("attribute", {"token": tok, "name": name, "description": name.replace(".", " ")})
        self.map_record = T("map", {"token": make_token(seed, "map"), "category": "semantic_prior", "filename": "",
                                    "log_tokens": []})


class _SceneWriter:
    """One scene's log, calibration, samples, sample_data, files and annotations."""

    def __init__(self, run: _Run, scene_index: int, frames: int):
        self.run, self.frames = run, frames
        timing = run.cfg.timing
        self.keyframe_dt = 1.0 / timing.keyframe_hz
        self.name = f"scene-{scene_index:04d}"
        self.scene_index = scene_index
        drive_seconds = (frames - 1) * self.keyframe_dt + 1.0
        self.world = SyntheticWorld(scene_seed(run.seed, scene_index), run.cfg, run.rig, None, drive_seconds,
                                    name=self.name)
        self.start_us = timing.base_timestamp_us + int(round(scene_index * timing.scene_spacing_s * 1e6))
        self.samples: list[dict] = []
        self.per_channel: dict[str, list[dict]] = {ch: [] for ch in run.channels}
        self.annotations: dict[int, list[dict]] = {}
        self.instance_category: dict[int, str] = {}

    def _token(self, *parts) -> str:
        return make_token(self.run.seed, self.name, *parts)

    def write_log_and_calibration(self) -> None:
        T, run = self.run.tables.add, self.run
        date = datetime.datetime.fromtimestamp(self.start_us / 1e6, tz=datetime.timezone.utc)
        self.logfile = f"synth-{date:%Y-%m-%d-%H-%M-%S}-seed{run.seed}-{self.name}"
        self.log = T("log", {"token": self._token("log"), "logfile": self.logfile, "vehicle": "synth",
                             "date_captured": f"{date:%Y-%m-%d}", "location": "synthetic-street"})
        run.map_record["log_tokens"].append(self.log["token"])
        self.calib = {}
        for cam in run.rig.cameras:
            self.calib[cam.name] = T("calibrated_sensor", {
                "token": self._token("calibrated_sensor", cam.name), "sensor_token": run.sensor_tokens[cam.name],
                "translation": [float(v) for v in cam.translation],
                "rotation": [float(v) for v in cam.rotation_wxyz],
                "camera_intrinsic": [[float(v) for v in row] for row in np.asarray(cam.intrinsics)]})["token"]
        lid = self.world.lidar_extrinsics
        self.calib[LIDAR_CHANNEL] = T("calibrated_sensor", {
            "token": self._token("calibrated_sensor", LIDAR_CHANNEL),
            "sensor_token": run.sensor_tokens[LIDAR_CHANNEL], "translation": [float(v) for v in lid.translation],
            "rotation": [float(v) for v in lid.rotation_wxyz], "camera_intrinsic": []})["token"]

    def _sample_data(self, channel: str, sample_token: str, t: float, key: bool, fileformat: str,
                     width: int, height: int, folder: str, pose: np.ndarray) -> dict:
        T = self.run.tables.add
        stamp = self.start_us + int(round(t * 1e6))
        token = self._token(channel, stamp)
        ext = "pcd.bin" if fileformat == "pcd" else "jpg"
        record = T("sample_data", {
            "token": token, "sample_token": sample_token, "ego_pose_token": token,
            "calibrated_sensor_token": self.calib[channel], "timestamp": stamp, "fileformat": fileformat,
            "is_key_frame": key, "height": height, "width": width,
            "filename": f"{folder}/{channel}/{self.logfile}__{channel}__{stamp}.{ext}", "prev": "", "next": ""})
        T("ego_pose", _pose_record(token, stamp, pose))
        self.per_channel[channel].append(record)
        return record

    def _camera(self, frame: CameraFrame, sample_token: str, t: float, key: bool, folder: str) -> None:
        calibration = frame.calibration
        rec = self._sample_data(frame.name, sample_token, t, key, "jpg", calibration.width, calibration.height,
                                folder, frame.ego_pose)
        out = self.run.out
        _camera_files(frame, out / rec["filename"], out / "gt" / "depth" / f"{rec['token']}.npz",
                      self.run.cfg.camera.jpeg_quality)

    def write_keyframe(self, k: int) -> None:
        out, t = self.run.out, k * self.keyframe_dt
        sample = self.run.tables.add("sample", {
            "token": self._token("sample", k), "timestamp": self.start_us + int(round(t * 1e6)), "prev": "",
            "next": "", "scene_token": self._token("scene")})
        self.samples.append(sample)
        keyframe = self.world.keyframe(t)
        lidar_rec = self._sample_data(LIDAR_CHANNEL, sample["token"], t, True, "pcd", 0, 0, "samples",
                                      keyframe.lidar.ego_pose)
        (out / lidar_rec["filename"]).parent.mkdir(parents=True, exist_ok=True)
        keyframe.lidar.points.astype(np.float32).tofile(out / lidar_rec["filename"])
        save_npz(out / "gt" / "lidar" / f"{lidar_rec['token']}.npz", semantic=keyframe.lidar.semantic,
                 instance=keyframe.lidar.instance)
        for frame in keyframe.cameras:
            self._camera(frame, sample["token"], frame.time, True, "samples")
        occ = keyframe.occupancy
        save_npz(out / "gt" / "occ3d" / self.name / sample["token"] / "labels.npz", semantics=occ.semantics,
                 mask_lidar=occ.mask_lidar, mask_camera=occ.mask_camera)
        _annotate(self.world, keyframe, sample["token"], self.annotations, self.instance_category, self.run.cfg,
                  self.run.seed, self.name, self.run.attribute_tokens)
        if k + 1 < self.frames:
            self._write_sweeps(sample["token"], t)

    def _write_sweeps(self, sample_token: str, t: float) -> None:
        """Camera images between this keyframe and the next (``sweeps_per_keyframe`` - 1 per camera)."""
        count = self.run.sweeps_per_keyframe
        delays = self.world.camera_delays()
        for j in range(1, count):
            for cam in self.run.rig.cameras:
                ts = t + delays[cam.name] + j * self.keyframe_dt / count
                self._camera(self.world.render_camera(cam, ts), sample_token, ts, False, "sweeps")

    def finish(self) -> tuple[int, int]:
        """Link the records, write instances, annotations and the scene; (samples, sample_data) written."""
        T, run = self.run.tables.add, self.run
        _link(self.samples)
        for records in self.per_channel.values():
            records.sort(key=lambda r: r["timestamp"])
            _link(records)
        for instance_id, anns in self.annotations.items():
            category = self.instance_category[instance_id]
            if category not in run.category_tokens:
                run.category_tokens[category] = make_token(run.seed, "category", category)
            inst_token = self._token("instance", instance_id)
            for ann in anns:
                ann["instance_token"] = inst_token
                T("sample_annotation", ann)
            _link(anns)
            T("instance", {"token": inst_token, "category_token": run.category_tokens[category],
                           "nbr_annotations": len(anns), "first_annotation_token": anns[0]["token"],
                           "last_annotation_token": anns[-1]["token"]})
        T("scene", {"token": self._token("scene"), "log_token": self.log["token"],
                    "nbr_samples": len(self.samples), "first_sample_token": self.samples[0]["token"],
                    "last_sample_token": self.samples[-1]["token"], "name": self.name,
                    "description": f"synthetic street, seed {run.seed}, scene {self.scene_index}"})
        return len(self.samples), sum(len(r) for r in self.per_channel.values())


def generate_dataset(out: str | os.PathLike, scenes: int = 1, frames: int = 3, seed: int = 0,
                     rig: str | os.PathLike | Rig = "nuscenes", size: tuple[int, int] | None = None,
                     sweeps: bool = False, version: str = "v1.0-synth", config: SynthSource = "default",
                     progress=None) -> dict:
    """Render ``scenes`` x ``frames`` keyframes into the nuScenes dataroot ``out``; return a summary dict."""
    if scenes < 1 or frames < 1:
        raise ValueError(f"need at least one scene and one keyframe, got scenes={scenes}, frames={frames}")
    started = wallclock.perf_counter()
    cfg = load_synth_config(config)
    rig = rig if isinstance(rig, Rig) else load_rig(rig)
    if size is not None:
        rig = rig.resized(int(size[0]), int(size[1]))
    timing = cfg.timing
    run = _Run(Path(out), seed, cfg, rig, int(round(timing.sweep_hz / timing.keyframe_hz)) if sweeps else 1)
    run.write_shared_tables()
    n_samples = n_data = 0
    for scene_index in range(scenes):
        writer = _SceneWriter(run, scene_index, frames)
        writer.write_log_and_calibration()
        for k in range(frames):
            writer.write_keyframe(k)
            if progress is not None:
                progress(writer.name, k)
        samples, data = writer.finish()
        n_samples, n_data = n_samples + samples, n_data + data
    for category, tok in sorted(run.category_tokens.items()):
        run.tables.add("category", {"token": tok, "name": category, "description": f"synthetic {category}"})
    run.tables.write(run.out / version)
    return {"dataroot": str(run.out), "version": version, "scenes": scenes, "samples": n_samples,
            "sample_data": n_data, "annotations": len(run.tables.tables["sample_annotation"]),
            "cameras": list(rig.camera_names), "image_size": [rig.cameras[0].width, rig.cameras[0].height],
            "sweeps": bool(sweeps), "seconds": round(wallclock.perf_counter() - started, 3)}


def _annotate(world: SyntheticWorld, keyframe: Keyframe, sample_token: str, annotations: dict, categories: dict,
              cfg: SynthConfig, seed: int, scene_name: str, attribute_tokens: dict) -> None:
    """Boxes (global frame) of the objects near the ego at this keyframe, with LiDAR point counts."""
    t = keyframe.time
    ego = world.ego_to_street(t)[:3, 3]
    limit = cfg.occupancy.annotation_range
    to_global = world.scene.street_to_global
    street_yaw = float(np.arctan2(to_global[1, 0], to_global[0, 0]))
    ids, counts = np.unique(keyframe.lidar.instance, return_counts=True)
    lidar_points = dict(zip(ids.tolist(), counts.tolist()))
    for obj in world.scene.objects:
        center = obj.center_at(t)
        if np.hypot(*(center - ego)[:2]) > limit:
            continue
        moving = bool(np.linalg.norm(obj.velocity) > 0.1)
        attributes = []
        if obj.category.startswith("vehicle."):
            attributes = [attribute_tokens["vehicle.moving" if moving else "vehicle.parked"]]
        elif obj.category.startswith("human."):
            attributes = [attribute_tokens["pedestrian.moving" if moving else "pedestrian.standing"]]
        annotations.setdefault(obj.instance, []).append({
            "token": make_token(seed, scene_name, "annotation", obj.instance, sample_token),
            "sample_token": sample_token, "instance_token": "",
            "visibility_token": _visibility(world, keyframe, obj), "attribute_tokens": attributes,
            "translation": [float(v) for v in (to_global @ np.append(center, 1.0))[:3]],
            "size": [float(v) for v in obj.size_wlh], "rotation": _yaw_quaternion(obj.yaw + street_yaw),
            "prev": "", "next": "", "num_lidar_pts": int(lidar_points.get(obj.instance, 0)), "num_radar_pts": 0})
        categories[obj.instance] = obj.category
