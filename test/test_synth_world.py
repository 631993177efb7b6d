"""The synthetic world's sensors and ground truth agree with geometry computed independently here."""

from __future__ import annotations

import numpy as np
import pytest

from distillnerf_train.synth import SyntheticWorld
from distillnerf_train.synth.geometry import BOX, CYLINDER, ELLIPSOID, Primitives
from distillnerf_train.synth.scene import flat_scene
from distillnerf_train.synth.occupancy import camera_mask
from distillnerf_train.synth.raycast import Region, nearest_hits
from distillnerf_train.synth.scene import CLASS_ID, FREE, SKY_LABEL

SIZE = (160, 90)


def backproject(frame) -> np.ndarray:
    """Street-frame points of every pixel with depth, from depth alone (ego at the street origin)."""
    cal = frame.calibration
    v, u = np.nonzero(frame.depth > 0)
    rays = np.stack([u + 0.5, v + 0.5, np.ones_like(u, dtype=float)], -1) @ np.linalg.inv(cal.intrinsics).T
    cam = rays * frame.depth[v, u][:, None]
    return cam @ cal.cam_to_ego[:3, :3].T + cal.cam_to_ego[:3, 3]


def test_ground_plane_and_wall_render_their_analytic_depth():
    wall = Primitives.from_rows([dict(kind=BOX, center=(30.0, 0.0, 5.0), half=(1.0, 40.0, 5.0), semantic=15,
                                      instance=7)])
    world = SyntheticWorld(scene=flat_scene(wall), size=SIZE)
    frame = world.render_camera("CAM_FRONT", 0.0)
    points = backproject(frame)
    labels = frame.semantic[frame.depth > 0]
    ground, wall_px = labels == CLASS_ID["driveable_surface"], labels == CLASS_ID["manmade"]
    assert ground.sum() > 1000 and wall_px.sum() > 1000
    np.testing.assert_allclose(points[ground, 2], 0.0, atol=1e-6)  # the plane z = 0
    np.testing.assert_allclose(points[wall_px, 0], 29.0, atol=1e-6)  # the wall's face x = 29
    assert np.all(frame.instance[frame.semantic == CLASS_ID["manmade"]] == 7)
    # Every pixel below the wall's top edge sees something; sky is labelled and has no depth.
    assert np.all((frame.semantic == SKY_LABEL) == frame.sky) and np.all(frame.depth[frame.sky] == 0)
    # Distance along the ray and camera z agree through the ray's angle.
    cal = frame.calibration
    v, u = np.nonzero(~frame.sky)
    rays = np.stack([u + 0.5, v + 0.5, np.ones_like(u, dtype=float)], -1) @ np.linalg.inv(cal.intrinsics).T
    np.testing.assert_allclose(frame.distance[v, u], frame.depth[v, u] * np.linalg.norm(rays, axis=1), rtol=1e-5)


@pytest.mark.parametrize("kind,half", [(CYLINDER, (0.5, 0.5, 2.0)), (ELLIPSOID, (1.0, 1.5, 2.0)),
                                       (BOX, (1.0, 1.0, 1.0))])
def test_primitive_surfaces_are_exact(kind, half):
    center = np.array([12.0, 0.5, 2.5])
    world = SyntheticWorld(scene=flat_scene(Primitives.from_rows([dict(kind=kind, center=center, half=half,
                                                                       yaw=0.4, semantic=4, instance=3)])), size=SIZE)
    frame = world.render_camera("CAM_FRONT", 0.0)
    points = backproject(frame)[frame.semantic[frame.depth > 0] == 4]
    assert len(points) > 50
    c, s = np.cos(0.4), np.sin(0.4)
    d = points - center
    q = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], -1) / np.array(half)
    if kind == BOX:
        level = np.abs(q).max(axis=1)
    elif kind == ELLIPSOID:
        level = np.linalg.norm(q, axis=1)
    else:
        level = np.maximum(np.hypot(q[:, 0], q[:, 1]), np.abs(q[:, 2]))
    np.testing.assert_allclose(level, 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def street():
    world = SyntheticWorld(seed=3, size=(228, 128), drive_seconds=2.0)
    return world, world.keyframe(0.5)


def inside_union(scene, time, points) -> np.ndarray:
    """Brute force over every primitive (independent of the library's culling): is each point inside a solid?"""
    prims = scene.primitives
    inside = points[..., 2] <= 0.0
    for i in range(len(prims)):
        c, s = np.cos(prims.yaw[i]), np.sin(prims.yaw[i])
        d = points - (prims.center[i] + prims.velocity[i] * time)
        q = np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1], d[..., 2]], -1) / prims.half[i]
        if prims.kind[i] == BOX:
            inside |= np.abs(q).max(axis=-1) <= 1
        elif prims.kind[i] == ELLIPSOID:
            inside |= (q ** 2).sum(axis=-1) <= 1
        else:
            inside |= (q[..., 0] ** 2 + q[..., 1] ** 2 <= 1) & (np.abs(q[..., 2]) <= 1)
    return inside


def test_every_occupied_voxel_holds_a_surface(street):
    world, key = street
    sem = key.occupancy.semantics
    occupied = np.argwhere(sem != FREE)
    assert len(occupied) > 2000
    assert {CLASS_ID["driveable_surface"], CLASS_ID["sidewalk"], CLASS_ID["manmade"]} <= set(np.unique(sem))
    # A 5^3 lattice including the voxel's corners: some points inside a solid and some outside.
    lattice = np.stack(np.meshgrid(*[np.linspace(0, 1, 5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    sample = occupied[np.random.default_rng(0).choice(len(occupied), 1500, replace=False)]
    ego_points = world.grid.corner + (sample[:, None, :] + lattice[None]) * world.grid.cubic_voxel
    pose = world.ego_to_street(key.time)
    street_points = ego_points @ pose[:3, :3].T + pose[:3, 3]
    inside = inside_union(world.scene, key.time, street_points)
    assert np.all(inside.any(axis=1)) and np.all(~inside.all(axis=1))


def test_lidar_returns_fall_in_occupied_and_lidar_visible_voxels(street):
    world, key = street
    lidar = key.lidar
    assert lidar.points.shape[1] == 5 and lidar.points.dtype == np.float32
    assert set(np.unique(lidar.points[:, 4]).astype(int)) <= set(range(32)) and lidar.points[:, 3].max() <= 255
    ego = lidar.points[:, :3] @ lidar.extrinsics.sensor_to_ego[:3, :3].T + lidar.extrinsics.sensor_to_ego[:3, 3]
    index, valid = world.grid.index_of(ego)
    index = index[valid]
    occ = key.occupancy
    in_occupied = occ.semantics[tuple(index.T)] != FREE
    assert in_occupied.mean() > 0.99, in_occupied.mean()
    offset = (ego[valid] - world.grid.corner) / world.grid.cubic_voxel
    off_faces = np.all(np.abs(offset - np.round(offset)) > 1e-4, axis=1)  # float32 points may cross a face
    assert np.all(occ.mask_lidar[tuple(index[off_faces].T)] == 1)
    # The voxel's class is the class the LiDAR saw there (object classes win over the ground they stand on).
    agree = occ.semantics[tuple(index.T)] == lidar.semantic[valid]
    assert agree.mean() > 0.95, agree.mean()
    # LiDAR free space: half-way to a return is visible to the LiDAR and free.
    half_way = world.grid.index_of(ego[valid] * 0.5 + lidar.extrinsics.translation * 0.5)[0]
    assert np.all(occ.mask_lidar[tuple(half_way.T)] == 1)
    assert (occ.semantics[tuple(half_way.T)] == FREE).mean() > 0.95


def test_camera_mask_matches_exact_visibility(street):
    world, key = street
    frame = next(f for f in key.cameras if f.name == "CAM_FRONT")
    mask = camera_mask(world.grid, world.ego_pose(key.time), [frame], world.ray_distances)
    assert mask.sum() > 1000
    # Exact check: cast one ray from the camera to each sampled voxel centre, against every primitive.
    rng = np.random.default_rng(1)
    ego_to_street = world.ego_to_street(key.time)
    cam_to_street = world.ego_to_street(frame.time) @ frame.calibration.cam_to_ego
    visible = np.argwhere(mask == 1)
    hidden_in_view = np.argwhere(mask == 0)
    centres_cam = []
    for idx in (visible, hidden_in_view):
        pick = idx[rng.choice(len(idx), min(len(idx), 4000), replace=False)]
        centres = world.grid.voxel_centres(pick) @ ego_to_street[:3, :3].T + ego_to_street[:3, 3]
        centres_cam.append(centres)
    origin = cam_to_street[:3, 3]
    h = world.grid.half_diagonal
    results = []
    for centres in centres_cam:
        offsets = centres - origin
        dist = np.linalg.norm(offsets, axis=1)
        dirs = (offsets / dist[:, None])[:, None, :]
        local = (offsets @ cam_to_street[:3, :3])  # camera frame
        K = frame.calibration.intrinsics
        uv = local[:, :2] / local[:, 2:3] * np.diag(K)[:2] + K[:2, 2]
        in_view = (local[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < frame.calibration.width) \
            & (uv[:, 1] >= 0) & (uv[:, 1] < frame.calibration.height)
        regions = [Region(i, slice(None), slice(None)) for i in range(len(world.scene.primitives))]
        hit, _ = nearest_hits(world.scene, frame.time, origin, dirs, regions, 0.1, 250.0)
        results.append((dist - h <= hit[:, 0], in_view))
    (seen_v, view_v), (seen_h, view_h) = results
    assert np.all(view_v)
    assert seen_v.mean() > 0.99, seen_v.mean()  # marked visible: the exact ray reaches the voxel
    assert (~seen_h[view_h]).mean() > 0.99, (~seen_h[view_h]).mean()  # in view but marked hidden: the ray stops first


def test_cameras_fire_after_the_lidar_in_rig_order_with_their_own_poses():
    world = SyntheticWorld(seed=1, size=(64, 36), drive_seconds=2.0)
    delays = world.camera_delays()
    assert list(delays) == list(world.rig.camera_names)
    values = np.array(list(delays.values())) * 1000
    assert values[0] == pytest.approx(7.0) and values[-1] == pytest.approx(49.0) and np.all(np.diff(values) > 0)
    poses = [world.ego_pose(d) for d in delays.values()]
    assert world.scene.ego.speed > 0
    assert np.linalg.norm(poses[-1][:3, 3] - poses[0][:3, 3]) == pytest.approx(world.scene.ego.speed * 0.042, rel=0.05)


def test_moving_objects_move_and_same_seed_same_world():
    a, b = SyntheticWorld(seed=5, size=(64, 36)), SyntheticWorld(seed=5, size=(64, 36))
    assert np.array_equal(a.render_camera("CAM_FRONT", 0.25).rgb, b.render_camera("CAM_FRONT", 0.25).rgb)
    moving = [o for o in a.scene.objects if np.linalg.norm(o.velocity) > 0]
    assert moving, "the street has moving traffic or pedestrians"
    assert np.linalg.norm(moving[0].center_at(0.5) - moving[0].center_at(0.0)) > 0.3
    c = SyntheticWorld(seed=6, size=(64, 36))
    assert not np.array_equal(a.render_camera("CAM_FRONT", 0.0).rgb, c.render_camera("CAM_FRONT", 0.0).rgb)


def test_any_rig_and_size_render(tmp_path):
    from distillnerf.rig import load_rig, rig_from_dict, save_rig

    rig = load_rig("nuscenes").to_dict()
    rig["cameras"] = rig["cameras"][:2]
    rig["cameras"][1]["width"], rig["cameras"][1]["height"] = 800, 600
    rig.pop("lidar")
    path = save_rig(rig_from_dict(rig), tmp_path / "two.yaml")
    assert [(c.width, c.height) for c in SyntheticWorld(seed=0, rig=path).rig.cameras] == [(1600, 900), (800, 600)]
    small = SyntheticWorld(seed=0, rig=path, size=(48, 36))
    assert [small.render_camera(n, 0.0).depth.shape for n in small.rig.camera_names] == [(36, 48), (36, 48)]
    assert small.scan_lidar(0.0).points.shape[0] > 1000  # the config's default LiDAR mount


def test_ddad_rig_renders_its_six_cameras():
    world = SyntheticWorld(seed=2, rig="ddad", size=(97, 61))
    assert world.rig.camera_names == ("CAMERA_05", "CAMERA_01", "CAMERA_06", "CAMERA_08", "CAMERA_09", "CAMERA_07")
    for name in world.rig.camera_names:
        frame = world.render_camera(name, 0.0)
        assert frame.rgb.shape == (61, 97, 3) and (~frame.sky).mean() > 0.3


def test_synth_config_extends_and_draws_rates_per_scene(tmp_path):
    import numpy as np

    from dataclasses import replace

    import yaml

    from distillnerf.config_files import resolve_config
    from distillnerf_train.synth.config import load_synth_config
    from distillnerf_train.synth.layout import _draw_scene_rates

    base = load_synth_config("default")
    mixed = load_synth_config("train_mixed")
    assert mixed.street == base.street and mixed.objects.poles == base.objects.poles
    low, high = mixed.objects.buses
    rates = [_draw_scene_rates(np.random.default_rng(s), mixed).objects.buses for s in range(20)]
    assert all(low <= r <= high for r in rates) and len(set(rates)) == 20
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert _draw_scene_rates(rng, base).objects == base.objects
    assert rng.bit_generator.state == state  # scalar rates draw nothing: the default world is unchanged
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: default\nobjects:\n  busses: 3\n")
    with pytest.raises(ValueError, match="busses"):
        load_synth_config(str(bad))
    # Each key has a declared type: the error names the file, the section and the key.
    bad.write_text("extends: default\nlidar:\n  beams: 32.5\n")
    with pytest.raises(ValueError, match=f"synth config {bad}: lidar: beams: expected a whole number"):
        load_synth_config(str(bad))
    bad.write_text("extends: default\nobjects:\n  buses: [1.0, 2.0, 3.0]\n")
    with pytest.raises(ValueError, match="objects: buses: expected a number.* or expected 2 values"):
        load_synth_config(str(bad))
    as_dict = {**yaml.safe_load(resolve_config("default", "synth").read_text()), "compute": {"threads": 1}}
    assert load_synth_config(as_dict) == replace(base, compute=replace(base.compute, threads=1))
    assert isinstance(mixed.objects.buses, tuple) and isinstance(base.objects.buses, float)
