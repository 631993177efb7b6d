"""The node's PointCloud2 messages read back with ROS 2's own reader, ``sensor_msgs_py.point_cloud2``.

test_conversions.py checks the layouts with the project's ``point_cloud_to_array``; this file checks that the
real tool (what RViz plugins, Autoware and user scripts use) reads the same values after a trip through the
wire format. sensor_msgs_py comes with a ROS 2 install only, so these tests skip without it. The skip is in a
fixture, not at module level: with ROS 2's launch_testing pytest plugin loaded (3.7, seen), a module-level skip
while it imports the file for collection skips every test of the folder.
"""

from __future__ import annotations

import numpy as np
import pytest

from distillnerf.occ3d import OccGridSpec
from distillnerf_ros import output_messages as out

#: A small grid with uneven voxel sizes, so a swapped axis or offset shows.
GRID = OccGridSpec.from_corner((-1.0, -2.0, 0.5), (0.4, 0.5, 0.25), (4, 3, 2))


@pytest.fixture(scope="module")
def point_cloud2():
    return pytest.importorskip("sensor_msgs_py.point_cloud2", reason="sensor_msgs_py is not installed (ROS 2 "
                               "install only); test_conversions.py checks the layouts with the project's reader")


def header(frame_id: str = ""):
    from std_msgs.msg import Header

    return Header(frame_id=frame_id)


def over_the_wire(msg):
    from rclpy.serialization import deserialize_message, serialize_message

    return deserialize_message(serialize_message(msg), type(msg))


def voxel_inputs():
    rng = np.random.default_rng(3)
    occupied = np.zeros(GRID.shape, bool)
    occupied[0, 0, 0] = occupied[3, 2, 1] = occupied[1, 2, 0] = True
    probability = rng.random(GRID.shape).astype(np.float32)
    labels = np.zeros(GRID.shape, np.uint8)
    labels[3, 2, 1], labels[1, 2, 0] = 4, 16  # car, vegetation
    return occupied, probability, labels


def test_voxel_cloud_reads_back_with_sensor_msgs_py(point_cloud2):
    occupied, probability, labels = voxel_inputs()
    msg = over_the_wire(out.voxel_cloud(header("base_link"), occupied, probability, labels, GRID))
    points = point_cloud2.read_points(msg, skip_nans=True)
    assert points.dtype.names == ("x", "y", "z", "rgb", "probability", "label")
    assert len(points) == 3

    index = np.argwhere(occupied)  # np.nonzero order, as voxel_cloud
    centres = GRID.centres(index)
    xyz = point_cloud2.read_points_numpy(msg, field_names=["x", "y", "z"])
    np.testing.assert_allclose(xyz, centres, atol=1e-6)
    np.testing.assert_array_equal(points["label"], labels[tuple(index.T)])
    np.testing.assert_array_equal(points["probability"], probability[tuple(index.T)])
    # rgb is 0x00RRGGBB in the bits of a float32 (RViz's RGB8): compare bits, not float values
    packed = np.asarray(points["rgb"]).view(np.uint32)
    colours = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1)
    np.testing.assert_array_equal(colours, out.OCC3D_PALETTE[labels[tuple(index.T)]])
    # the per-point tuples that scripts iterate over carry the same values
    second = point_cloud2.read_points_list(msg)[1]
    assert second.label == labels[tuple(index[1])] and second.x == pytest.approx(centres[1, 0], abs=1e-6)


def test_query_cloud_reads_back_with_sensor_msgs_py(point_cloud2):
    xyz = np.array([[1.5, -2.25, 0.5], [10.0, 3.0, -1.0]], np.float32)
    similarity = np.array([0.25, -0.5], np.float32)
    msg = over_the_wire(out.query_cloud(header("base_link"), xyz, similarity))
    points = point_cloud2.read_points(msg)
    assert points.dtype.names == ("x", "y", "z", "intensity")
    np.testing.assert_array_equal(point_cloud2.read_points_numpy(msg, field_names=["x", "y", "z"]), xyz)
    np.testing.assert_array_equal(points["intensity"], similarity)


def test_empty_cloud_reads_back_as_no_points(point_cloud2):
    msg = over_the_wire(out.query_cloud(header(), np.zeros((0, 3)), np.zeros(0)))
    assert len(point_cloud2.read_points(msg)) == 0 and point_cloud2.read_points_list(msg) == []


def test_a_cloud_written_by_sensor_msgs_py_reads_with_the_project_reader(point_cloud2):
    from sensor_msgs.msg import PointField

    fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, name in enumerate(("x", "y", "z", "intensity"))]
    values = [(1.0, 2.0, 3.0, 0.5), (-4.0, 5.5, 0.25, -1.0)]
    msg = over_the_wire(point_cloud2.create_cloud(header(), fields, values))
    points = out.point_cloud_to_array(msg)
    assert points.dtype.names == ("x", "y", "z", "intensity")
    np.testing.assert_array_equal(np.array(points.tolist()), np.array(values))
