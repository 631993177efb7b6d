"""The optimised output builders give byte for byte the messages of straightforward builds, on random inputs of
every layout the node meets (and some it should never meet), and the messages survive serialisation."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS message packages are not installed")
from std_msgs.msg import Header  # noqa: E402

from distillnerf.occ3d import OccGridSpec  # noqa: E402
from distillnerf_ros import output_messages as out  # noqa: E402

GROUND = (11, 12, 13, 14)
GRIDS = {  # Occ3D-like (a power-of-two column: the per-column tables) and odd sizes (the per-voxel table)
    "pow2": OccGridSpec.from_corner((-40.0, -40.0, -1.0), (0.4, 0.4, 0.4), (20, 30, 16)),
    "odd": OccGridSpec.from_corner((-1.0, -2.0, 0.5), (0.4, 0.5, 0.25), (7, 5, 3)),
}


# ----------------------------------------------------------------------------- the straightforward references

def reference_bird_eye_view(occupied, labels, visible, ground):
    is_ground = np.zeros(256, dtype=bool)
    is_ground[list(ground)] = True
    obstacle = (occupied & ~is_ground[labels]).any(axis=2)
    seen = visible.any(axis=2)
    return np.where(obstacle, np.int8(100), np.where(seen, np.int8(0), np.int8(-1))).astype(np.int8)


def reference_voxel_bytes(occupied, probability, labels, grid, max_points=None) -> bytes:
    ix, iy, iz = np.nonzero(occupied)
    if max_points is not None and len(ix) > max_points:
        keep = np.sort(np.argpartition(-probability[ix, iy, iz], max_points - 1)[:max_points])
        ix, iy, iz = ix[keep], iy[keep], iz[keep]
    points = np.empty(len(ix), dtype=out.VOXEL_DTYPE)
    for axis, index in enumerate((ix, iy, iz)):
        points["xyz"[axis]] = np.float32(grid.origin[axis]) + (index.astype(np.float32) + np.float32(0.5)) \
            * np.float32(grid.voxel_size[axis])
    label = labels[ix, iy, iz]
    points["label"] = label
    palette = out.pack_rgb(out.OCC3D_PALETTE)
    points["rgb"] = palette[np.minimum(label, len(palette) - 1)]
    points["probability"] = probability[ix, iy, iz]
    return points.tobytes()


def reference_query_bytes(points, relevance) -> bytes:
    cloud = np.empty(len(points), dtype=out.QUERY_DTYPE)
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    cloud["x"], cloud["y"], cloud["z"] = points[:, 0], points[:, 1], points[:, 2]
    cloud["intensity"] = np.asarray(relevance, dtype=np.float32).reshape(-1)
    return cloud.tobytes()


# --------------------------------------------------------------------------------------------- random volumes

def volume(rng, shape, fraction):
    probability = rng.random(shape, dtype=np.float32)
    occupied = probability > 1.0 - fraction
    labels = rng.integers(0, 256 if fraction < 0.5 else 18, shape).astype(np.uint8)  # past the palette too
    visible = (rng.random(shape) < 0.3).astype(np.uint8) * rng.integers(1, 4, shape).astype(np.uint8)
    return occupied, probability, labels, visible


@pytest.mark.parametrize("grid_name", sorted(GRIDS))
@pytest.mark.parametrize("fraction", [0.0, 0.07, 0.6, 1.0])
def test_voxel_cloud_bytes_equal_the_reference(grid_name, fraction):
    grid = GRIDS[grid_name]
    rng = np.random.default_rng(int(fraction * 100) + len(grid_name))
    occupied, probability, labels, _ = volume(rng, grid.shape, fraction)
    for cap in (None, 5, int(occupied.sum()) + 1):
        msg = out.voxel_cloud(Header(), occupied, probability, labels, grid, cap)
        assert bytes(msg.data) == reference_voxel_bytes(occupied, probability, labels, grid, cap)
        assert msg.width * msg.point_step == len(msg.data) and msg.row_step == len(msg.data)
    wide = probability.astype(np.float64), labels.astype(np.int64)  # other dtypes: the generic path
    assert bytes(out.voxel_cloud(Header(), occupied, wide[0], wide[1], grid).data) == \
        reference_voxel_bytes(occupied, wide[0], wide[1], grid)


def test_voxel_cloud_of_arrays_shaped_unlike_the_grid_uses_their_shape():
    rng = np.random.default_rng(5)
    occupied, probability, labels, _ = volume(rng, (6, 4, 8), 0.3)
    grid = GRIDS["pow2"]  # declared 20 x 30 x 16
    assert bytes(out.voxel_cloud(Header(), occupied, probability, labels, grid).data) == \
        reference_voxel_bytes(occupied, probability, labels, grid)


@pytest.mark.parametrize("grid_name", sorted(GRIDS))
@pytest.mark.parametrize("ground", [GROUND, (0,), (), (17, 255)])
def test_bird_eye_view_equals_the_reference(grid_name, ground):
    rng = np.random.default_rng(len(ground))
    occupied, _, labels, visible = volume(rng, GRIDS[grid_name].shape, 0.1)
    labels[rng.random(labels.shape) < 0.5] = 11  # plenty of ground
    for seen in (visible, visible.astype(bool), np.zeros_like(visible)):
        bev = out.bird_eye_view(occupied, labels, seen, ground)
        assert bev.dtype == np.int8
        np.testing.assert_array_equal(bev, reference_bird_eye_view(occupied, labels, seen, ground))
    strided = occupied[:, :, ::-1], labels[:, :, ::-1], visible[:, :, ::-1]  # not C-contiguous
    np.testing.assert_array_equal(out.bird_eye_view(*strided, ground), reference_bird_eye_view(*strided, ground))
    grid = out.occupancy_grid(Header(), bev, GRIDS[grid_name])
    assert bytes(grid.data) == np.ascontiguousarray(bev.T).tobytes()


def test_semantic_depth_rgb_and_query_bytes_equal_the_reference():
    rng = np.random.default_rng(7)
    occupied, _, labels, visible = volume(rng, (20, 30, 16), 0.1)
    semantic = out.semantic_occupancy(Header(), labels, visible.astype(bool), ["c"] * 18, GRIDS["pow2"])
    assert bytes(semantic.labels) == labels.tobytes()
    assert bytes(semantic.camera_visible) == (visible > 0).astype(np.uint8).tobytes()

    depth = rng.random((6, 13, 21), dtype=np.float32) * 80
    depth[rng.random(depth.shape) < 0.1] = np.nan
    depth[0, 0, :3] = (np.inf, -np.inf, -0.0)
    for image in (depth[2], depth[3].astype(np.float64), depth[4][:, ::2]):
        reference = np.where(np.isfinite(image.astype(np.float32)), image.astype(np.float32), 0.0)
        assert bytes(out.depth_image(Header(), image).data) == reference.astype(np.float32).tobytes()
    assert bytes(out.depth_image(Header(), depth[0]).data)[8:12] == np.float32(-0.0).tobytes()  # kept as it is

    planar = rng.integers(0, 256, (6, 3, 12, 20), dtype=np.uint8)  # the model's layout: HWC views of CHW memory
    for image in (planar.transpose(0, 2, 3, 1)[1], np.ascontiguousarray(planar.transpose(0, 2, 3, 1)[2]),
                  planar.transpose(0, 2, 3, 1)[3, ::2, ::3]):
        msg = out.rgb_image(Header(), image)
        assert bytes(msg.data) == np.ascontiguousarray(image).tobytes()
        assert (msg.width, msg.height, msg.step) == (image.shape[1], image.shape[0], image.shape[1] * 3)

    points = rng.normal(size=(257, 3)) * 30  # float64: cast as the reference does
    relevance = rng.random((257, 5), dtype=np.float32)[:, 2]  # a strided column, as the backend's
    assert bytes(out.query_cloud(Header(), points, relevance).data) == reference_query_bytes(points, relevance)


def test_every_output_message_round_trips_through_serialisation():
    """The messages carry what rclpy serialises (array fields, checked values) and read back unchanged."""
    pytest.importorskip("distillnerf_msgs.msg", reason="distillnerf_msgs is not built")
    from rclpy.serialization import deserialize_message, serialize_message

    rng = np.random.default_rng(11)
    occupied, probability, labels, visible = volume(rng, (20, 30, 16), 0.1)
    header = Header(frame_id="base_link")
    messages = {
        "grid": out.occupancy_grid(header, out.bird_eye_view(occupied, labels, visible, GROUND), GRIDS["pow2"]),
        "voxels": out.voxel_cloud(header, occupied, probability, labels, GRIDS["pow2"]),
        "semantic": out.semantic_occupancy(header, labels, visible, ["c"] * 18, GRIDS["pow2"]),
        "depth": out.depth_image(header, rng.random((4, 6), dtype=np.float32)),
        "rgb": out.rgb_image(header, rng.integers(0, 256, (3, 12, 4), dtype=np.uint8).transpose(1, 2, 0)),
        "info": out.camera_info(header, np.diag([100.0, 90.0, 1.0]), 6, 4),
        "query": out.query_cloud(header, rng.random((9, 3)), rng.random(9)),
    }
    for name, msg in messages.items():
        back = deserialize_message(serialize_message(msg), type(msg))
        for field in ("data", "labels", "camera_visible", "k", "p"):
            if hasattr(msg, field):
                assert bytes(np.asarray(getattr(back, field)).tobytes()) == \
                    bytes(np.asarray(getattr(msg, field)).tobytes()), (name, field)
        assert back.header.frame_id == "base_link", name
