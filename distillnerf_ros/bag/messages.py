"""ROS 2 messages for the bag, built with the ``rosbags`` typestore (no ROS install needed).

``rosbags`` message classes have no defaults, so every field is filled here, once, for each message kind.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: nuScenes ``.pcd.bin`` layout: five little-endian float32 per point. The bag keeps these bytes unchanged.
LIDAR_FIELDS = ("x", "y", "z", "intensity", "ring")
FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32


@lru_cache(maxsize=1)
def typestore():
    """The newest ROS 2 typestore this ``rosbags`` knows (Kilted when present)."""
    from rosbags.typesys import Stores, get_typestore

    for name in ("ROS2_KILTED", "ROS2_JAZZY", "LATEST"):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    raise RuntimeError("rosbags has no ROS 2 typestore")  # pragma: no cover


def _types():
    return typestore().types


def stamp_of(timestamp_us: int):
    """Exact ``builtin_interfaces/Time`` of a nuScenes microsecond timestamp."""
    sec, micro = divmod(int(timestamp_us), 1_000_000)
    return _types()["builtin_interfaces/msg/Time"](sec=sec, nanosec=micro * 1000)


def header(timestamp_us: int, frame_id: str):
    return _types()["std_msgs/msg/Header"](stamp=stamp_of(timestamp_us), frame_id=frame_id)


def compressed_image(timestamp_us: int, frame_id: str, jpeg: bytes):
    return _types()["sensor_msgs/msg/CompressedImage"](
        header=header(timestamp_us, frame_id), format="jpeg", data=np.frombuffer(jpeg, dtype=np.uint8))


def camera_info(timestamp_us: int, frame_id: str, width: int, height: int, intrinsics: np.ndarray):
    """Pinhole CameraInfo of an already-rectified nuScenes camera: plumb_bob with zero distortion, R = I."""
    types = _types()
    k = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
    p = np.zeros((3, 4))
    p[:, :3] = k
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types["sensor_msgs/msg/CameraInfo"](
        header=header(timestamp_us, frame_id), height=int(height), width=int(width), distortion_model="plumb_bob",
        d=np.zeros(5), k=k.reshape(-1).copy(), r=np.eye(3).reshape(-1), p=p.reshape(-1), binning_x=0,
        binning_y=0, roi=roi)


def lidar_points(timestamp_us: int, frame_id: str, raw: bytes):
    """PointCloud2 of a nuScenes ``.pcd.bin`` (x, y, z, intensity, ring as float32), bytes kept as they are."""
    types = _types()
    point_step = 4 * len(LIDAR_FIELDS)
    if len(raw) % point_step:
        raise ValueError(f"LiDAR file size {len(raw)} is not a multiple of {point_step} bytes (5 float32)")
    count = len(raw) // point_step
    fields = [types["sensor_msgs/msg/PointField"](name=name, offset=4 * i, datatype=FLOAT32, count=1)
              for i, name in enumerate(LIDAR_FIELDS)]
    return types["sensor_msgs/msg/PointCloud2"](
        header=header(timestamp_us, frame_id), height=1, width=count, fields=fields, is_bigendian=False,
        point_step=point_step, row_step=point_step * count, data=np.frombuffer(raw, dtype=np.uint8),
        is_dense=True)


def transform(timestamp_us: int, parent: str, child: str, translation, rotation_wxyz):
    types = _types()
    w, x, y, z = (float(v) for v in rotation_wxyz)
    tx, ty, tz = (float(v) for v in translation)
    return types["geometry_msgs/msg/TransformStamped"](
        header=header(timestamp_us, parent), child_frame_id=child,
        transform=types["geometry_msgs/msg/Transform"](
            translation=types["geometry_msgs/msg/Vector3"](x=tx, y=ty, z=tz),
            rotation=types["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)))


def tf_message(transforms: list):
    return _types()["tf2_msgs/msg/TFMessage"](transforms=transforms)


def serialize(message) -> bytes:
    return bytes(typestore().serialize_cdr(message, message.__msgtype__))
