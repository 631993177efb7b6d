"""World-generation settings: ``distillnerf_train/configs/synth/<name>.yaml`` (see ``default.yaml`` there).

The values live in the YAML files only; the dataclasses below declare each key's type (read by
``distillnerf.dataclass_config``: unknown or missing keys and wrong types are errors naming the file, section and
key). ``Range`` is a ``[low, high]`` pair a value is drawn from uniformly; ``SizeRange`` the low and high
(length, width, height); ``ColourRange`` the low and high RGB in [0, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from distillnerf.config_files import load_yaml, resolve_config
from distillnerf.dataclass_config import dataclass_from_dict

Range = tuple[float, float]
IntRange = tuple[int, int]  # inclusive, low and high
Vector = tuple[float, float, float]
SizeRange = tuple[Vector, Vector]
ColourRange = tuple[Vector, Vector]
#: An object rate per 100 m of street: a number, or a [low, high] range drawn once per scene.
Rate = float | tuple[float, float]

#: Object rates that may be given as a [low, high] range: drawn once per scene, so a dataset mixes quiet and busy
#: streets. A plain number draws nothing (the default world's bytes do not change).
PER_SCENE_RATES = ("parked_cars", "moving_cars", "trucks", "buses", "pedestrians")

_PROBABILITY = {"range": (0.0, 1.0)}
_POSITIVE = {"range": (1, None)}


@dataclass(frozen=True)
class ComputeSettings:
    threads: int = field(default=1, metadata=_POSITIVE)  # same results for any count


@dataclass(frozen=True)
class TimingSettings:
    base_timestamp_us: int
    scene_spacing_s: float
    keyframe_hz: float
    sweep_hz: float
    camera_delay_ms: Range


@dataclass(frozen=True)
class EgoSettings:
    speed: Range
    sway_amplitude: Range
    sway_period_s: Range
    start_x: Range


@dataclass(frozen=True)
class StreetSettings:
    lanes_per_direction: IntRange = field(metadata=_POSITIVE)
    lane_width: Range
    parking_lane_probability: float = field(metadata=_PROBABILITY)
    parking_lane_width: Range
    sidewalk_width: Range
    curb_height: float
    verge_width: Range
    plaza_probability: float = field(metadata=_PROBABILITY)
    extent_behind: float
    extent_ahead: float
    marking_width: float
    dash_length: float
    dash_period: float


@dataclass(frozen=True)
class BuildingSettings:
    width: Range
    depth: Range
    height: Range
    gap: Range
    setback: Range
    probability: float = field(metadata=_PROBABILITY)


@dataclass(frozen=True)
class ObjectSettings:
    parked_cars: Rate
    moving_cars: Rate
    trucks: Rate
    buses: Rate
    pedestrians: Rate
    walking_fraction: float = field(metadata=_PROBABILITY)
    poles: float
    trees: float
    bushes: float
    work_zone_probability: float = field(metadata=_PROBABILITY)
    cones_per_zone: IntRange
    barriers_per_zone: IntRange
    car_speed: Range
    pedestrian_speed: Range
    car_size: SizeRange
    truck_size: SizeRange
    bus_size: SizeRange
    pedestrian_height: Range
    pole_height: Range
    pole_radius: Range
    trunk_height: Range
    crown_radius: Range
    crown_clearance: tuple[float, float]  # lowest crown bottom: on the verge, on the sidewalk (over the road)

    def size_range(self, kind: str) -> SizeRange:
        """``car_size``, ``truck_size`` or ``bus_size``."""
        return getattr(self, f"{kind}_size")


@dataclass(frozen=True)
class ColourSettings:
    asphalt: ColourRange
    marking: ColourRange
    sidewalk: ColourRange
    terrain: ColourRange
    plaza: ColourRange
    building: ColourRange
    window: ColourRange
    vegetation: ColourRange
    trunk: ColourRange
    vehicle: ColourRange
    pedestrian: ColourRange
    pole: ColourRange
    cone: ColourRange
    barrier: ColourRange


@dataclass(frozen=True)
class LightingSettings:
    sun_elevation: Range
    sun_intensity: Range
    ambient: Range
    sky_zenith: ColourRange
    sky_horizon: ColourRange
    haze_distance: Range


@dataclass(frozen=True)
class CameraSettings:
    near: float
    far: float
    jpeg_quality: int = field(metadata={"range": (1, 100)})


@dataclass(frozen=True)
class MountSettings:
    translation: Vector
    rotation_wxyz: tuple[float, float, float, float]


@dataclass(frozen=True)
class LidarSettings:
    beams: int = field(metadata=_POSITIVE)
    elevation_deg: Range
    azimuth_steps: int = field(metadata=_POSITIVE)
    max_range: float
    min_range: float
    default_mount: MountSettings  # used when the rig has no LiDAR


@dataclass(frozen=True)
class OccupancySettings:
    range_min: Vector
    range_max: Vector
    voxel_size: float
    subsamples: int = field(metadata=_POSITIVE)
    annotation_range: float


@dataclass(frozen=True)
class SynthConfig:
    timing: TimingSettings
    ego: EgoSettings
    street: StreetSettings
    buildings: BuildingSettings
    objects: ObjectSettings
    colours: ColourSettings
    lighting: LightingSettings
    camera: CameraSettings
    lidar: LidarSettings
    occupancy: OccupancySettings
    compute: ComputeSettings = field(default_factory=ComputeSettings)


#: What ``load_synth_config`` accepts: a config name or file, a mapping laid out like a file, or a loaded config.
SynthSource = str | os.PathLike | dict | SynthConfig


def synth_config_from_dict(data: dict, source: str = "<dict>") -> SynthConfig:
    return dataclass_from_dict(SynthConfig, data, f"synth config {source}")


def load_synth_config(name_or_path: SynthSource = "default") -> SynthConfig:
    """The typed settings of a file (or of a mapping laid out like one); a ``SynthConfig`` is passed through, so
    callers may tweak a loaded config (``dataclasses.replace``).

    A file with ``extends: NAME`` starts from that config and overrides it section by section (keys not given
    keep the base's values); unknown sections or keys are errors, so a typo cannot silently do nothing."""
    if isinstance(name_or_path, SynthConfig):
        return name_or_path
    if isinstance(name_or_path, dict):
        return synth_config_from_dict(name_or_path)
    path = resolve_config(name_or_path, "synth")
    return synth_config_from_dict(_merged_mapping(path), str(path))


def _merged_mapping(path) -> dict:
    """The file's mapping with its ``extends:`` chain applied, section by section."""
    data = load_yaml(path)
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    base = _merged_mapping(resolve_config(base_name, "synth"))
    for section, values in data.items():
        if section not in base or not isinstance(values, dict) or not isinstance(base[section], dict):
            raise ValueError(f"synth config {path}: {section!r} is not a section of {base_name!r}")
        base[section] = {**base[section], **values}
    return base
