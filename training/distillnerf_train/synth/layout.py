"""Procedural street layouts: one seeded random street per scene, built from the ranges in the synth configs
(``distillnerf_train/configs/synth``).

Cross-section (y from the centre line outwards, per side): driving lanes, an optional parking lane, a raised
sidewalk, a verge of terrain or paved plaza, then building lots. The ego drives in a lane on the right (y < 0) side
towards +x; right-side traffic drives towards +x and left-side traffic towards -x.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from distillnerf_train.synth.config import PER_SCENE_RATES, SynthConfig
from distillnerf_train.synth.geometry import BOX, CYLINDER, ELLIPSOID, Primitives
from distillnerf_train.synth.scene import (CHECKER, CLASS_ID, NOISE, ROAD, STRIPES, WINDOWS, EgoDrive, GroundStrips,
                                           Lighting, Materials, ObjectRecord, Scene)

CATEGORIES = {  # our object kinds -> (nuScenes category, Occ3D class)
    "car": ("vehicle.car", CLASS_ID["car"]),
    "truck": ("vehicle.truck", CLASS_ID["truck"]),
    "bus": ("vehicle.bus.rigid", CLASS_ID["bus"]),
    "pedestrian": ("human.pedestrian.adult", CLASS_ID["pedestrian"]),
    "cone": ("movable_object.trafficcone", CLASS_ID["traffic_cone"]),
    "barrier": ("movable_object.barrier", CLASS_ID["barrier"]),
}


class _Builder:
    """Collects primitives, materials and annotatable objects while the layout is drawn."""

    def __init__(self, rng: np.random.Generator, cfg: SynthConfig):
        self.rng = rng
        self.cfg = cfg
        self.rows: list[dict] = []
        self.materials: list[dict] = []
        self.objects: list[ObjectRecord] = []
        self.next_instance = 1

    def uniform(self, bounds) -> float:
        return float(self.rng.uniform(bounds[0], bounds[1]))

    def colour(self, name: str) -> np.ndarray:
        return self.rng.uniform(*getattr(self.cfg.colours, name))  # low and high RGB

    def material(self, **spec) -> int:
        spec.setdefault("reflectance", 0.3)
        self.materials.append(spec)
        return len(self.materials) - 1

    def instance(self) -> int:
        self.next_instance += 1
        return self.next_instance - 1

    def part(self, kind, center, half, semantic, material, instance=0, yaw=0.0, velocity=(0.0, 0.0, 0.0)) -> None:
        self.rows.append(dict(kind=kind, center=center, half=half, yaw=yaw, semantic=semantic, instance=instance,
                              material=material, velocity=velocity))

    def annotate(self, kind: str, instance: int, center, length: float, width: float, height: float, yaw: float,
                 velocity) -> None:
        self.objects.append(ObjectRecord(instance, CATEGORIES[kind][0], np.asarray(center, float),
                                         np.array([width, length, height]), float(yaw),
                                         np.asarray(velocity, float)))


def _draw_scene_rates(rng: np.random.Generator, cfg: SynthConfig) -> SynthConfig:
    """Object rates given as [low, high] take one uniform value for this scene (see PER_SCENE_RATES)."""
    drawn = {}
    for key in PER_SCENE_RATES:
        rate = getattr(cfg.objects, key)
        if isinstance(rate, tuple):
            drawn[key] = float(rng.uniform(rate[0], rate[1]))
    return replace(cfg, objects=replace(cfg.objects, **drawn)) if drawn else cfg


def build_scene(rng: np.random.Generator, cfg: SynthConfig, drive_seconds: float, name: str = "synth") -> Scene:
    """A random street long enough for ``drive_seconds`` of ego driving, with everything the config asks for."""
    cfg = _draw_scene_rates(rng, cfg)
    b = _Builder(rng, cfg)
    st = cfg.street

    # Ego drive and street extent.
    ego_cfg = cfg.ego
    lanes = int(rng.integers(st.lanes_per_direction[0], st.lanes_per_direction[1] + 1))
    lane_w = b.uniform(st.lane_width)
    ego_lane = int(rng.integers(0, lanes))
    ego = EgoDrive(b.uniform(ego_cfg.start_x), b.uniform(ego_cfg.speed), -(ego_lane + 0.5) * lane_w,
                   b.uniform(ego_cfg.sway_amplitude), b.uniform(ego_cfg.sway_period_s),
                   b.uniform((0.0, 2 * np.pi)))
    x_min = ego.start_x - st.extent_behind
    x_max = ego.start_x + ego.speed * drive_seconds + st.extent_ahead
    length = x_max - x_min

    # Materials of the ground.
    asphalt = b.material(base=b.colour("asphalt"), pattern=ROAD, scale=0.6, contrast=0.15, reflectance=0.15)
    marking = b.material(base=b.colour("marking"), reflectance=0.9)
    tiles = b.material(base=b.colour("sidewalk"), pattern=CHECKER, scale=0.6, contrast=0.12, reflectance=0.3)
    grass = b.material(base=b.colour("terrain"), pattern=NOISE, scale=0.8, contrast=0.35, reflectance=0.4)
    plaza = b.material(base=b.colour("plaza"), pattern=CHECKER, scale=1.2, contrast=0.15, reflectance=0.3)

    # Cross-section per side (+1 left, -1 right).
    markings: list[tuple[float, bool]] = [(0.0, False)]
    sides = {}
    for side in (-1, 1):
        road = lanes * lane_w
        for k in range(1, lanes):
            markings.append((side * k * lane_w, True))
        markings.append((side * (road - 0.3), False))
        parking = rng.random() < st.parking_lane_probability
        if parking:
            road += b.uniform(st.parking_lane_width)
        sidewalk = b.uniform(st.sidewalk_width)
        verge = b.uniform(st.verge_width)
        paved = rng.random() < st.plaza_probability
        sides[side] = dict(road=road, parking=parking, sidewalk=sidewalk, verge=verge, paved=paved,
                           lot=road + sidewalk + verge)

    # Ground strips across y: outer verge | sidewalk | road | sidewalk | outer verge.
    right, left = sides[-1], sides[1]
    verge_class = {False: (CLASS_ID["terrain"], grass), True: (CLASS_ID["other_flat"], plaza)}
    edges = [-1e9, -(right["road"] + right["sidewalk"]), -right["road"], left["road"], left["road"] + left["sidewalk"],
             1e9]
    sidewalk_strip, road_strip = (CLASS_ID["sidewalk"], tiles), (CLASS_ID["driveable_surface"], asphalt)
    strip_classes = [verge_class[right["paved"]], sidewalk_strip, road_strip, sidewalk_strip,
                     verge_class[left["paved"]]]
    ground = GroundStrips(np.array(edges), np.array([c for c, _ in strip_classes], np.uint8),
                          np.array([m for _, m in strip_classes], np.int32))

    # Raised sidewalks, in segments so that cameras cull them well.
    curb = st.curb_height
    for side, s in sides.items():
        y = side * (s["road"] + s["sidewalk"] / 2)
        for x0 in np.arange(x_min, x_max, 20.0):
            x1 = min(x0 + 20.0, x_max)
            b.part(BOX, ((x0 + x1) / 2, y, (curb - 0.3) / 2), ((x1 - x0) / 2, s["sidewalk"] / 2, (curb + 0.3) / 2),
                   CLASS_ID["sidewalk"], tiles)

    _buildings(b, sides, x_min, x_max)
    for side, s in sides.items():
        _street_furniture(b, side, s, x_min, x_max, length)
    _traffic(b, sides, lanes, lane_w, ego, ego_lane, x_min, x_max, length)

    light_cfg = cfg.lighting
    elevation = np.radians(b.uniform(light_cfg.sun_elevation))
    azimuth = b.uniform((-np.pi, np.pi))
    lighting = Lighting(
        np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]),
        b.uniform(light_cfg.sun_intensity), b.uniform(light_cfg.ambient),
        rng.uniform(*light_cfg.sky_zenith), rng.uniform(*light_cfg.sky_horizon),
        b.uniform(light_cfg.haze_distance))

    yaw = b.uniform((-np.pi, np.pi))
    street_to_global = np.eye(4)
    street_to_global[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    street_to_global[:2, 3] = rng.uniform(300.0, 2000.0, size=2)

    return Scene(Primitives.from_rows(b.rows), Materials.from_rows(b.materials), ground, lighting, ego,
                 street_to_global, markings, st.marking_width, st.dash_length, st.dash_period, marking,
                 b.objects, name)


def _buildings(b: _Builder, sides: dict, x_min: float, x_max: float) -> None:
    cfg = b.cfg.buildings
    for side, s in sides.items():
        x = x_min - 20.0
        while x < x_max + 20.0:
            width = b.uniform(cfg.width)
            if b.rng.random() < cfg.probability:
                depth, height = b.uniform(cfg.depth), b.uniform(cfg.height)
                front = s["lot"] + b.uniform(cfg.setback)
                pattern = WINDOWS if b.rng.random() < 0.8 else CHECKER
                mat = b.material(base=b.colour("building"), second=b.colour("window"), pattern=pattern,
                                 scale=b.uniform((2.8, 3.6)), contrast=0.12, reflectance=0.35)
                b.part(BOX, (x + width / 2, side * (front + depth / 2), height / 2), (width / 2, depth / 2, height / 2),
                       CLASS_ID["manmade"], mat, b.instance())
            x += width + b.uniform(cfg.gap)


def _count(b: _Builder, per_100m: float, length: float) -> int:
    return int(b.rng.poisson(per_100m * length / 100.0))


def _street_furniture(b: _Builder, side: int, s: dict, x_min: float, x_max: float, length: float) -> None:
    """Poles, trees, bushes and pedestrians on one side (counts per side are half the configured totals)."""
    ob = b.cfg.objects
    curb_y = s["road"]
    walk_in, walk_out = s["road"] + 0.3, s["road"] + s["sidewalk"] - 0.3
    pole_mat = b.material(base=b.colour("pole"), pattern=STRIPES, second=b.colour("pole") * 0.7, scale=1.0,
                          contrast=0.05, reflectance=0.6)
    for _ in range(_count(b, ob.poles / 2, length)):
        x, h, r = b.uniform((x_min, x_max)), b.uniform(ob.pole_height), b.uniform(ob.pole_radius)
        inst = b.instance()
        y = side * (curb_y + 0.5)
        b.part(CYLINDER, (x, y, h / 2), (r, r, h / 2), CLASS_ID["manmade"], pole_mat, inst)
        arm = b.uniform((0.8, 2.0))
        b.part(BOX, (x, y - side * arm / 2, h - 0.1), (0.25, arm / 2, 0.1), CLASS_ID["manmade"], pole_mat, inst)

    trunk_mat = b.material(base=b.colour("trunk"), pattern=NOISE, scale=0.2, contrast=0.3, reflectance=0.3)
    for _ in range(_count(b, ob.trees / 2, length)):
        x = b.uniform((x_min, x_max))
        on_verge = s["verge"] > 1.5 and not s["paved"]
        if on_verge:
            y = side * (s["road"] + s["sidewalk"] + b.uniform((0.6, s["verge"] - 0.6)))
        else:
            y = side * (walk_out - 0.2)
        trunk_h, crown = b.uniform(ob.trunk_height), b.uniform(ob.crown_radius)
        crown_h = crown * b.uniform((0.8, 1.3))
        # Crowns that may reach over the road hang high enough for traffic to pass below.
        clearance = ob.crown_clearance[0 if on_verge else 1]
        crown_z = max(trunk_h - 0.3 * crown_h, clearance) + crown_h
        r = b.uniform((0.12, 0.3))
        leaves = b.material(base=b.colour("vegetation"), pattern=NOISE, scale=0.35, contrast=0.45, reflectance=0.45)
        inst = b.instance()
        b.part(CYLINDER, (x, y, crown_z / 2), (r, r, crown_z / 2), CLASS_ID["vegetation"], trunk_mat, inst)
        b.part(ELLIPSOID, (x, y, crown_z), (crown, crown, crown_h), CLASS_ID["vegetation"], leaves, inst)

    if s["verge"] > 1.2 and not s["paved"]:
        for _ in range(_count(b, ob.bushes / 2, length)):
            x = b.uniform((x_min, x_max))
            rx, rz = b.uniform((0.4, min(1.2, s["verge"] / 2 - 0.1))), b.uniform((0.35, 0.9))
            y = side * (s["road"] + s["sidewalk"] + b.uniform((rx, s["verge"] - rx)))
            leaves = b.material(base=b.colour("vegetation"), pattern=NOISE, scale=0.25, contrast=0.5, reflectance=0.45)
            b.part(ELLIPSOID, (x, y, 0.5 * rz), (rx, rx * b.uniform((0.7, 1.3)), rz), CLASS_ID["vegetation"], leaves,
                   b.instance())

    for _ in range(_count(b, ob.pedestrians / 2, length)):
        x, y = b.uniform((x_min, x_max)), side * b.uniform((walk_in, walk_out))
        h = b.uniform(ob.pedestrian_height)
        walking = b.rng.random() < ob.walking_fraction
        speed = b.uniform(ob.pedestrian_speed) * b.rng.choice([-1.0, 1.0]) if walking else 0.0
        velocity = (speed, 0.0, 0.0)
        inst = b.instance()
        clothes = b.material(base=b.colour("pedestrian"), second=b.colour("pedestrian"), pattern=STRIPES,
                             scale=b.uniform((0.3, 0.6)), contrast=0.1, reflectance=0.3)
        skin = b.material(base=b.rng.uniform([0.35, 0.22, 0.15], [0.95, 0.75, 0.6]), contrast=0.05)
        body_h, head_r = h - 0.24, 0.12
        radius = b.uniform((0.18, 0.26))
        b.part(CYLINDER, (x, y, body_h / 2), (radius, radius * 0.8, body_h / 2), CLASS_ID["pedestrian"], clothes, inst,
               velocity=velocity)
        b.part(ELLIPSOID, (x, y, h - head_r), (head_r * 0.9, head_r * 0.9, head_r), CLASS_ID["pedestrian"], skin, inst,
               velocity=velocity)
        b.annotate("pedestrian", inst, (x, y, h / 2), 2 * radius, 2 * radius * 0.8, h, 0.0 if speed >= 0 else np.pi,
                   velocity)


def _vehicle(b: _Builder, kind: str, x: float, y: float, heading: float, speed: float) -> tuple[float, float]:
    """A car, truck or bus centred at (x, y) facing ``heading`` (0 or pi); returns its (length, width)."""
    length, width, height = b.rng.uniform(*b.cfg.objects.size_range(kind))
    velocity = (speed * np.cos(heading), 0.0, 0.0)
    paint = b.material(base=b.colour("vehicle"), pattern=NOISE, scale=0.3, contrast=0.15, reflectance=0.7)
    glass = b.material(base=b.colour("window"), contrast=0.02, reflectance=0.2)
    inst = b.instance()
    cls = CATEGORIES[kind][1]
    forward = np.cos(heading)
    clearance = 0.2 if kind == "car" else 0.35
    if kind == "car":
        body_top = clearance + 0.5 * (height - clearance)
        b.part(BOX, (x, y, (clearance + body_top) / 2), (length / 2, width / 2, (body_top - clearance) / 2), cls, paint,
               inst, heading, velocity)
        cabin_l = 0.55 * length
        b.part(BOX, (x - forward * 0.05 * length, y, (body_top + height) / 2), (cabin_l / 2, 0.45 * width,
               (height - body_top) / 2), cls, glass, inst, heading, velocity)
    elif kind == "truck":
        cab_l = 2.2
        cab_x = x + forward * (length - cab_l) / 2
        cab_top = 0.85 * height
        b.part(BOX, (cab_x, y, (clearance + cab_top) / 2), (cab_l / 2, width / 2, (cab_top - clearance) / 2), cls,
               paint, inst, heading, velocity)
        cargo = b.material(base=b.colour("vehicle"), pattern=CHECKER, scale=1.5, contrast=0.08, reflectance=0.6)
        b.part(BOX, (x - forward * cab_l / 2, y, (clearance + height) / 2), ((length - cab_l) / 2 - 0.05, width / 2,
               (height - clearance) / 2), cls, cargo, inst, heading, velocity)
    else:  # bus: windows band via stripes
        body = b.material(base=b.colour("vehicle"), second=b.colour("window"), pattern=STRIPES,
                          scale=(height - clearance) / 2.2, contrast=0.12, reflectance=0.6)
        b.part(BOX, (x, y, (clearance + height) / 2), (length / 2, width / 2, (height - clearance) / 2), cls, body,
               inst, heading, velocity)
    b.annotate(kind, inst, (x, y, (clearance + height) / 2), length, width, height - clearance, heading, velocity)
    return length, width


def _traffic(b: _Builder, sides: dict, lanes: int, lane_w: float, ego: EgoDrive, ego_lane: int, x_min: float,
             x_max: float, length: float) -> None:
    ob = b.cfg.objects
    # Work zone: cones and barriers along one road edge (parking lane, else the sidewalk edge).
    zone = None
    if b.rng.random() < ob.work_zone_probability:
        side = int(b.rng.choice([-1, 1]))
        s = sides[side]
        start = b.uniform((ego.start_x + 10.0, x_max - 40.0))
        zone = (side, start, start + 25.0)
        y_edge = side * (s["road"] - 0.8) if s["parking"] else side * (s["road"] + 0.5)
        cone_mat = b.material(base=b.colour("cone"), second=(0.95, 0.95, 0.95), pattern=STRIPES, scale=0.18,
                              contrast=0.0, reflectance=0.9)
        for x in np.sort(b.rng.uniform(start, start + 25.0, int(b.rng.integers(*ob.cones_per_zone)))):
            inst = b.instance()
            b.part(CYLINDER, (x, y_edge, 0.36), (0.14, 0.14, 0.36), CLASS_ID["traffic_cone"], cone_mat, inst)
            b.annotate("cone", inst, (x, y_edge, 0.36), 0.28, 0.28, 0.72, 0.0, (0, 0, 0))
        barrier_mat = b.material(base=b.colour("barrier"), second=(0.9, 0.1, 0.1), pattern=STRIPES, scale=0.25,
                                 contrast=0.0, reflectance=0.8)
        count = int(b.rng.integers(*ob.barriers_per_zone))
        for k in range(count):
            x = start + 2.0 + k * 2.2
            inst = b.instance()
            y = y_edge + side * 0.6
            b.part(BOX, (x, y, 0.5), (1.0, 0.2, 0.5), CLASS_ID["barrier"], barrier_mat, inst)
            b.annotate("barrier", inst, (x, y, 0.5), 2.0, 0.4, 1.0, 0.0, (0, 0, 0))

    # Parked cars in the parking lanes, bumper to bumper with random gaps, skipping the work zone.
    parking_sides = [side for side, s in sides.items() if s["parking"]]
    if parking_sides:
        mean_gap = 100.0 / max(ob.parked_cars / len(parking_sides), 1e-3)
        for side in parking_sides:
            s = sides[side]
            y = side * (lanes * lane_w + (s["road"] - lanes * lane_w) / 2)
            x = x_min + b.uniform((0.0, mean_gap))
            while x < x_max:
                if zone is None or zone[0] != side or not (zone[1] - 5.0 < x < zone[2] + 5.0):
                    heading = 0.0 if side < 0 else np.pi
                    car_length, _ = _vehicle(b, "car", x, y, heading, 0.0)
                    x += car_length
                x += 1.0 + b.rng.exponential(max(mean_gap - 4.5, 0.5))

    # Moving traffic per lane: one speed per lane keeps gaps constant, so vehicles never collide.
    kinds = ["car", "truck", "bus"]
    rates = np.array([ob.moving_cars, ob.trucks, ob.buses])
    per_lane = rates.sum() / (2 * lanes)
    for side in (-1, 1):
        for lane in range(lanes):
            y = side * (lane + 0.5) * lane_w
            heading = 0.0 if side < 0 else np.pi
            ego_lane_here = side < 0 and lane == ego_lane
            speed = ego.speed if ego_lane_here else b.uniform(ob.car_speed)
            count = _count(b, per_lane, length)
            placed: list[tuple[float, float]] = []
            for _ in range(count):
                kind = kinds[int(b.rng.choice(3, p=rates / rates.sum()))]
                x = b.uniform((x_min, x_max))
                span = ob.size_range(kind)[1][0] / 2 + 2.0
                if ego_lane_here and ego.start_x - 15.0 < x < ego.start_x + 12.0 + span:
                    continue  # keep the road in front of and behind the ego clear
                if any(abs(x - px) < span + ps for px, ps in placed):
                    continue
                placed.append((x, span))
                _vehicle(b, kind, x, y, heading, speed)
