"""ROS messages <-> numpy, with numpy only (no cv_bridge / sensor_msgs_py needed; both are absent in many installs).

Input side: every check a driver or a bag can fail is done here and raised as ``InputError`` with a ``kind``
(the node turns it into a throttled warning and a diagnostics entry, never a crash). Output side: builders for
the node's messages; PointCloud2 data is one structured-array ``tobytes()`` (RViz's layout: packed ``rgb`` float32).
"""

from __future__ import annotations

import array
import struct
from dataclasses import dataclass

import numpy as np

#: Raw encodings accepted on input: channels, and whether the channel order is BGR.
RAW_ENCODINGS = {"rgb8": (3, False), "bgr8": (3, True), "rgba8": (4, False), "bgra8": (4, True), "mono8": (1, False)}

#: Occ3D-nuScenes class colours (RGB), index = label, as the Occ3D/SurroundOcc visualisations; 17 (free) unused.
OCC3D_PALETTE = np.array([
    [0, 0, 0], [255, 120, 50], [255, 192, 203], [255, 255, 0], [0, 150, 245], [0, 255, 255], [200, 180, 0],
    [255, 0, 0], [255, 240, 150], [135, 60, 0], [160, 32, 240], [255, 0, 255], [139, 137, 137], [75, 0, 75],
    [150, 240, 80], [230, 230, 250], [0, 175, 0], [255, 255, 255],
], dtype=np.uint8)


class InputError(ValueError):
    """A message the node cannot use. ``kind`` groups warnings and diagnostics (e.g. ``encoding``, ``jpeg``)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# --------------------------------------------------------------------------------------------------- input side

def stamp_to_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def stamp_to_nanoseconds(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def raw_image_size(msg) -> tuple[int, int]:
    """(width, height) of a sensor_msgs/Image after checking its encoding and buffer; raises InputError."""
    encoding = msg.encoding.lower()
    if encoding not in RAW_ENCODINGS:
        raise InputError("encoding", f"unsupported image encoding {msg.encoding!r} (use one of "
                                     f"{', '.join(RAW_ENCODINGS)})")
    if msg.width == 0 or msg.height == 0 or len(msg.data) == 0:
        raise InputError("empty", f"empty image ({msg.width}x{msg.height}, {len(msg.data)} bytes)")
    row = msg.width * RAW_ENCODINGS[encoding][0]
    if msg.step < row or len(msg.data) < msg.step * msg.height:
        raise InputError("size", f"image buffer of {len(msg.data)} bytes (step {msg.step}) is too small for "
                                 f"{msg.width}x{msg.height} {msg.encoding}")
    return int(msg.width), int(msg.height)


def raw_image_to_rgb(msg) -> np.ndarray:
    """HxWx3 uint8 RGB of a sensor_msgs/Image (a view of the message buffer where the encoding is rgb8)."""
    import cv2

    width, height = raw_image_size(msg)
    channels, bgr = RAW_ENCODINGS[msg.encoding.lower()]
    rows = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * height).reshape(height, msg.step)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    if channels == 1:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    if channels == 4:
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if bgr else pixels


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def compressed_image_size(msg) -> tuple[int, int]:
    """(width, height) read from a JPEG or PNG header without decoding; raises InputError for anything else.

    A truncated JPEG decodes "successfully" into a grey-padded image, so the end-of-image marker is required too.
    """
    data = memoryview(msg.data).cast("B") if not isinstance(msg.data, (bytes, bytearray)) else memoryview(msg.data)
    if len(data) == 0:
        raise InputError("empty", "empty compressed image")
    head = bytes(data[:32])
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    if not head.startswith(b"\xff\xd8"):
        raise InputError("jpeg", f"compressed image ({msg.format!r}) is neither JPEG nor PNG")
    if b"\xff\xd9" not in bytes(data[-16:]):
        raise InputError("jpeg", "corrupt JPEG: no end-of-image marker (truncated?)")
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            raise InputError("jpeg", f"corrupt JPEG: bad marker at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = (data[position + 2] << 8) | data[position + 3]
        if marker in _JPEG_SOF:
            height = (data[position + 5] << 8) | data[position + 6]
            width = (data[position + 7] << 8) | data[position + 8]
            if width == 0 or height == 0:
                raise InputError("jpeg", "corrupt JPEG: zero image size")
            return width, height
        if length < 2:
            raise InputError("jpeg", f"corrupt JPEG: bad segment length at byte {position}")
        position += 2 + length
    raise InputError("jpeg", "corrupt JPEG: no frame header")


def decode_compressed(msg, target_size: tuple[int, int] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB of a CompressedImage; with ``target_size`` (w, h) JPEG is decoded at the smallest libjpeg
    reduction (1/2, 1/4, 1/8) that stays at least that large, which is several times faster than full size."""
    import cv2

    width, height = compressed_image_size(msg)
    flag = cv2.IMREAD_COLOR
    if target_size is not None:
        for factor, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if width // factor >= target_size[0] and height // factor >= target_size[1]:
                flag = reduced
                break
    image = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), flag)
    if image is None or image.ndim != 3:
        raise InputError("jpeg", f"could not decode the compressed image ({msg.format!r})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def camera_info_intrinsics(msg) -> np.ndarray:
    """3x3 K of a CameraInfo after checking it is usable (positive finite focal lengths, image size set)."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(k)):
        raise InputError("intrinsics", "camera_info K contains NaN or infinity")
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise InputError("intrinsics", f"camera_info K has non-positive focal lengths ({k[0, 0]}, {k[1, 1]})")
    if msg.width == 0 or msg.height == 0:
        raise InputError("intrinsics", "camera_info has no image size (width/height 0)")
    return k


def scale_intrinsics(k: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """K of an image resampled from (W, H) to (w, h), pixel-edge convention (as ``CameraCalibration.resized``)."""
    return np.diag([to_size[0] / from_size[0], to_size[1] / from_size[1], 1.0]) @ np.asarray(k, dtype=np.float64)


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if (image.shape[1], image.shape[0]) == tuple(size):
        return np.ascontiguousarray(image)
    return cv2.resize(image, tuple(int(v) for v in size), interpolation=cv2.INTER_AREA)


# -------------------------------------------------------------------------------------------------- output side

def _uint8_array(data: np.ndarray) -> array.array:
    """An ``array('B')`` from a numpy buffer: the type rclpy stores, so assignment does not convert per element."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(data).tobytes())
    return out


def depth_image(header, depth: np.ndarray):
    """sensor_msgs/Image 32FC1 (metres of camera z, REP 118; 0 = no data)."""
    from sensor_msgs.msg import Image

    depth = np.ascontiguousarray(depth, dtype=np.float32)
    depth = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    msg = Image(header=header, height=depth.shape[0], width=depth.shape[1], encoding="32FC1",
                is_bigendian=int(np.little_endian is False), step=depth.shape[1] * 4)
    msg.data = _uint8_array(depth)
    return msg


def rgb_image(header, image: np.ndarray):
    from sensor_msgs.msg import Image

    image = np.ascontiguousarray(image, dtype=np.uint8)
    msg = Image(header=header, height=image.shape[0], width=image.shape[1], encoding="rgb8", is_bigendian=0,
                step=image.shape[1] * 3)
    msg.data = _uint8_array(image)
    return msg


def camera_info(header, intrinsics: np.ndarray, width: int, height: int):
    """A pinhole CameraInfo (no distortion: the model works on rectified images) for ``width`` x ``height``."""
    from sensor_msgs.msg import CameraInfo

    k = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
    msg = CameraInfo(header=header, width=int(width), height=int(height), distortion_model="plumb_bob")
    msg.d = [0.0] * 5
    msg.k = k.reshape(-1)
    msg.r = np.eye(3).reshape(-1)
    p = np.zeros((3, 4))
    p[:, :3] = k
    msg.p = p.reshape(-1)
    return msg


_POINTFIELD_TYPES = {np.dtype(np.int8): 1, np.dtype(np.uint8): 2, np.dtype(np.int16): 3, np.dtype(np.uint16): 4,
                     np.dtype(np.int32): 5, np.dtype(np.uint32): 6, np.dtype(np.float32): 7,
                     np.dtype(np.float64): 8}


def point_cloud(header, points: np.ndarray):
    """sensor_msgs/PointCloud2 of a structured array (one PointField per named field, dense, little-endian)."""
    from sensor_msgs.msg import PointCloud2, PointField

    points = np.ascontiguousarray(points)
    fields = []
    for name in points.dtype.names:
        dtype, offset = points.dtype.fields[name][:2]
        fields.append(PointField(name=name, offset=offset, datatype=_POINTFIELD_TYPES[dtype.newbyteorder("=")],
                                 count=1))
    msg = PointCloud2(header=header, height=1, width=len(points), fields=fields, is_bigendian=False,
                      point_step=points.dtype.itemsize, row_step=points.dtype.itemsize * len(points),
                      is_dense=True)
    msg.data = _uint8_array(points.view(np.uint8) if len(points) else np.zeros(0, np.uint8))
    return msg


def point_cloud_to_array(msg) -> np.ndarray:
    """Structured array of a PointCloud2 (the reverse of ``point_cloud``; used by tests and the bench)."""
    names = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
    dtype = np.dtype({"names": [f.name for f in msg.fields],
                      "formats": [("<" if not msg.is_bigendian else ">") + names[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    return np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width * msg.height)


def pack_rgb(colours: np.ndarray) -> np.ndarray:
    """Nx3 uint8 -> N float32 holding 0x00RRGGBB, the ``rgb`` field RViz's RGB8 colour transformer reads."""
    colours = np.asarray(colours, dtype=np.uint32)
    return ((colours[:, 0] << 16) | (colours[:, 1] << 8) | colours[:, 2]).astype(np.uint32).view(np.float32)


_PACKED_PALETTE = pack_rgb(OCC3D_PALETTE)

VOXEL_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("probability", "<f4"),
                        ("label", "<u4")])
QUERY_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])


@dataclass(frozen=True)
class VoxelGrid:
    """Geometry of a dense voxel grid indexed [ix, iy, iz]: corner of voxel 0, voxel size, voxel counts."""

    origin: tuple[float, float, float]
    voxel_size: tuple[float, float, float]
    shape: tuple[int, int, int]

    def centres(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(self.origin) + (np.asarray(indices, dtype=np.float64) + 0.5) * np.asarray(self.voxel_size)


#: The Occ3D-nuScenes grid: 200 x 200 x 16 voxels of 0.4 m over [-40, 40]^2 x [-1, 5.4] m.
OCC3D_GRID = VoxelGrid((-40.0, -40.0, -1.0), (0.4, 0.4, 0.4), (200, 200, 16))


def voxel_cloud(header, occupied: np.ndarray, probability: np.ndarray, labels: np.ndarray,
                grid: VoxelGrid = OCC3D_GRID, max_points: int | None = None):
    """PointCloud2 of occupied voxel centres: x, y, z, rgb (class colour), probability, label; at most
    ``max_points`` of them, the most probable first (RViz stalls above a few hundred thousand points)."""
    ix, iy, iz = np.nonzero(occupied)
    if max_points is not None and len(ix) > max_points:
        keep = np.argpartition(-probability[ix, iy, iz], max_points - 1)[:max_points]
        keep.sort()  # grid order, as without a cap
        ix, iy, iz = ix[keep], iy[keep], iz[keep]
    points = np.empty(len(ix), dtype=VOXEL_DTYPE)
    for axis, index in enumerate((ix, iy, iz)):
        points["xyz"[axis]] = np.float32(grid.origin[axis]) + (index.astype(np.float32) + np.float32(0.5)) \
            * np.float32(grid.voxel_size[axis])
    label = labels[ix, iy, iz]
    points["label"] = label
    points["rgb"] = _PACKED_PALETTE[np.minimum(label, len(_PACKED_PALETTE) - 1)]
    points["probability"] = probability[ix, iy, iz]
    return point_cloud(header, points)


def query_cloud(header, points: np.ndarray, relevance: np.ndarray):
    """PointCloud2 x, y, z, intensity (= the query's relevance in [0, 1], which RViz's Intensity colouring
    shows)."""
    cloud = np.empty(len(points), dtype=QUERY_DTYPE)
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    cloud["x"], cloud["y"], cloud["z"] = points[:, 0], points[:, 1], points[:, 2]
    cloud["intensity"] = np.asarray(relevance, dtype=np.float32).reshape(-1)
    return point_cloud(header, cloud)


#: OccupancyGrid cell values (nav2 / nvblox convention, not Autoware's 1..99 with 50 unknown).
GRID_FREE, GRID_OCCUPIED, GRID_UNKNOWN = 0, 100, -1


def bird_eye_view(occupied: np.ndarray, labels: np.ndarray, camera_visible: np.ndarray,
                  ground_labels: tuple[int, ...]) -> np.ndarray:
    """[ix, iy] int8 map: 100 where a column holds an occupied non-ground voxel, 0 where some voxel of the column is
    camera-visible and none is an obstacle, -1 where no camera sees the column. Ground classes (road, sidewalk,
    terrain, other flat) are drivable or walkable surface, not obstacles, so they count as free."""
    is_ground = np.zeros(256, dtype=bool)
    is_ground[list(ground_labels)] = True
    obstacle = (occupied & ~is_ground[labels]).any(axis=2)
    seen = camera_visible.any(axis=2)
    bev = np.where(obstacle, np.int8(GRID_OCCUPIED), np.where(seen, np.int8(GRID_FREE), np.int8(GRID_UNKNOWN)))
    return bev.astype(np.int8, copy=False)


def occupancy_grid(header, bev: np.ndarray, grid: VoxelGrid = OCC3D_GRID):
    """nav_msgs/OccupancyGrid of a [ix, iy] map: cell (ix, iy) is data[iy * width + ix] (x = columns)."""
    from nav_msgs.msg import OccupancyGrid

    msg = OccupancyGrid(header=header)
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(grid.voxel_size[0])
    msg.info.width, msg.info.height = int(bev.shape[0]), int(bev.shape[1])
    msg.info.origin.position.x, msg.info.origin.position.y = float(grid.origin[0]), float(grid.origin[1])
    msg.info.origin.position.z = 0.0
    msg.info.origin.orientation.w = 1.0
    data = array.array("b")
    data.frombytes(np.ascontiguousarray(bev.T, dtype=np.int8).tobytes())
    msg.data = data
    return msg


def semantic_occupancy(header, labels: np.ndarray, camera_visible: np.ndarray, class_names,
                       grid: VoxelGrid = OCC3D_GRID):
    """distillnerf_msgs/SemanticOccupancy (layout index = (ix * size_y + iy) * size_z + iz, i.e. C order)."""
    from distillnerf_msgs.msg import SemanticOccupancy

    msg = SemanticOccupancy(header=header)
    msg.origin.x, msg.origin.y, msg.origin.z = (float(v) for v in grid.origin)
    msg.resolution = np.asarray(grid.voxel_size, dtype=np.float32)
    msg.size = np.asarray(labels.shape, dtype=np.uint32)
    msg.class_names = list(class_names)
    msg.labels = _uint8_array(labels.astype(np.uint8, copy=False))
    msg.camera_visible = _uint8_array(camera_visible.astype(np.uint8, copy=False))
    return msg


def nanoseconds_to_time(nanoseconds: int):
    """builtin_interfaces/Time of integer nanoseconds (exact: a float of seconds loses the last ~200 ns)."""
    from builtin_interfaces.msg import Time

    return Time(sec=int(nanoseconds) // 1_000_000_000, nanosec=int(nanoseconds) % 1_000_000_000)
