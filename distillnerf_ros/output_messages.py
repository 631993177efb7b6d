"""The node's output messages, built from numpy at about the cost of copying their bytes.

Each message buffer is one ``array('B')`` filled in place through a numpy view, so no intermediate structured
array or ``bytes`` is made, and the message keeps that array as it is (``fast_fields``), so serialising it is the
only copy. Whatever depends only on the voxel grid (voxel centres) or on the palette (packed colours per label) is
computed once. The results are byte for byte those of the straightforward builds (``test/test_output_messages.py``).
PointCloud2 data is RViz's layout: a packed ``rgb`` float32 holding 0x00RRGGBB.
"""

from __future__ import annotations

import array
import functools
from dataclasses import dataclass

import numpy as np

from distillnerf.occ3d import OCC3D_PALETTE as _PALETTE_RGB, OccGridSpec

#: Occ3D-nuScenes class colours (RGB), index = label (the model library's palette as an array).
OCC3D_PALETTE = np.array(_PALETTE_RGB, dtype=np.uint8)

#: OccupancyGrid cell values (nav2 / nvblox convention, not Autoware's 1..99 with 50 unknown).
GRID_FREE, GRID_OCCUPIED, GRID_UNKNOWN = 0, 100, -1

VOXEL_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("probability", "<f4"),
                        ("label", "<u4")])
QUERY_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])


#: The Occ3D-nuScenes grid: 200 x 200 x 16 voxels of 0.4 m over [-40, 40]^2 x [-1, 5.4] m (the model library's).
OCC3D_GRID = OccGridSpec()


# ----------------------------------------------------------------------------------------- buffers and constants

def message_buffer(nbytes: int) -> array.array:
    """A zeroed ``array('B')`` of ``nbytes``, to be filled in place through ``np.frombuffer`` (repeating a
    one-byte array is a single allocation and memset; ``array('B', bytes(n))`` would copy a second buffer)."""
    return array.array("B", [0]) * int(nbytes)


def fast_fields(message_type) -> dict:
    """Constructor keywords under which a message stores an assigned ``array`` as it is. With the field checks
    off (rclpy's default since Jazzy) a ``uint8[]`` setter copies whatever it is given, an ``array('B')``
    included; with them on it keeps an ``array`` of the right type code and checks the other fields (cheap). A
    message without the switch (Humble) always keeps an ``array``."""
    return {"check_fields": True} if "_check_fields" in getattr(message_type, "__slots__", ()) else {}


def _uint8_array(data: np.ndarray) -> array.array:
    """An ``array('B')`` holding a copy of a numpy buffer: one memcpy (no ``tobytes`` intermediate)."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
    return out


def pack_rgb(colours: np.ndarray) -> np.ndarray:
    """Nx3 uint8 -> N float32 holding 0x00RRGGBB, the ``rgb`` field RViz's RGB8 colour transformer reads."""
    colours = np.asarray(colours, dtype=np.uint32)
    return ((colours[:, 0] << 16) | (colours[:, 1] << 8) | colours[:, 2]).astype(np.uint32).view(np.float32)


_PACKED_PALETTE = pack_rgb(OCC3D_PALETTE)
#: The packed colour of every uint8 label (labels past the palette take its last colour, as ``np.minimum`` did).
_PACKED_BY_LABEL = _PACKED_PALETTE.view(np.uint32)[np.minimum(np.arange(256), len(_PACKED_PALETTE) - 1)]


def _axis_centres(grid: OccGridSpec, axis: int, count: int) -> np.ndarray:
    """float32 centres along one axis: origin + (index + 0.5) * size, in float32 as per voxel (bit-identical)."""
    return np.float32(grid.origin[axis]) + (np.arange(count).astype(np.float32) + np.float32(0.5)) \
        * np.float32(grid.voxel_size[axis])


@dataclass(frozen=True)
class VoxelCentres:
    """Centres of every voxel of a grid, laid out for gathering by flat (C-order) index, computed once per grid.

    With a power-of-two column height (Occ3D: 16) the column of a voxel is ``flat >> shift``: x and y come from one
    8-byte gather in a per-column table (40 000 entries, cache-resident) and z from a per-level table. Otherwise
    ``xyz`` holds all three coordinates of every voxel (3 x 4 bytes per voxel)."""

    shift: int | None
    xy_by_column: np.ndarray | None  # '<u8' [X*Y]: x (low word) and y (high word) of each column, '<f4' pairs
    z_by_level: np.ndarray | None  # '<f4' [Z]
    xyz: np.ndarray | None  # '<f4' [3, X*Y*Z]

    def write(self, flat: np.ndarray, words: np.ndarray) -> None:
        """x, y, z of the voxels ``flat`` into columns 0-2 of ``words`` ('<f4' [N, k >= 3], 8-byte aligned rows)."""
        if self.shift is not None:
            words.view("<u8")[:, 0] = np.take(self.xy_by_column, flat >> self.shift)
            words[:, 2] = np.take(self.z_by_level, flat & ((1 << self.shift) - 1))
            return
        for axis in range(3):
            words[:, axis] = np.take(self.xyz[axis], flat)


@functools.lru_cache(maxsize=8)
def voxel_centres(grid: OccGridSpec, shape: tuple[int, int, int]) -> VoxelCentres:
    """The centre tables of a grid's voxels for arrays of ``shape`` (the grid's own, normally)."""
    x, y, z = (_axis_centres(grid, axis, count) for axis, count in enumerate(shape))
    levels = shape[2]
    if levels > 0 and levels & (levels - 1) == 0:  # a power of two
        pairs = np.empty((shape[0], shape[1], 2), "<f4")
        pairs[..., 0], pairs[..., 1] = x[:, None], y[None, :]
        return VoxelCentres(levels.bit_length() - 1, _frozen(pairs.reshape(-1, 2).view("<u8").reshape(-1)),
                            _frozen(z.astype("<f4")), None)
    xyz = np.empty((3, *shape), "<f4")
    xyz[0], xyz[1], xyz[2] = x[:, None, None], y[None, :, None], z[None, None, :]
    return VoxelCentres(None, None, None, _frozen(xyz.reshape(3, -1)))


def _frozen(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values


@functools.lru_cache(maxsize=8)
def _non_ground_lut(ground_labels: tuple[int, ...]) -> np.ndarray:
    """uint8[256]: 1 for a label that is not ground."""
    is_ground = np.zeros(256, dtype=bool)
    is_ground[list(ground_labels)] = True
    return (~is_ground).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _point_field_specs(dtype: np.dtype) -> tuple[tuple[str, int, int], ...]:
    names = {np.dtype(np.int8): 1, np.dtype(np.uint8): 2, np.dtype(np.int16): 3, np.dtype(np.uint16): 4,
             np.dtype(np.int32): 5, np.dtype(np.uint32): 6, np.dtype(np.float32): 7, np.dtype(np.float64): 8}
    return tuple((name, dtype.fields[name][1], names[dtype.fields[name][0].newbyteorder("=")])
                 for name in dtype.names)


# ------------------------------------------------------------------------------------------------ images

def depth_image(header, depth: np.ndarray):
    """sensor_msgs/Image 32FC1 (metres of camera z, REP 118; 0 = no data)."""
    from sensor_msgs.msg import Image

    depth = np.asarray(depth)
    height, width = depth.shape
    data = message_buffer(height * width * 4)
    pixels = np.frombuffer(data, np.float32).reshape(height, width)  # native order, as is_bigendian says
    np.copyto(pixels, depth, casting="unsafe")
    np.copyto(pixels, np.float32(0.0), where=~np.isfinite(pixels))
    msg = Image(header=header, height=height, width=width, encoding="32FC1",
                is_bigendian=int(np.little_endian is False), step=width * 4, **fast_fields(Image))
    msg.data = data
    return msg


def _interleaved(image: np.ndarray) -> array.array:
    """The bytes of an HxWx3 uint8 image in row-major HWC order. The model's images are HWC views of planar CHW
    memory, where a numpy copy walks the channels with a stride of a plane (20 times slower than merging the three
    contiguous planes with OpenCV)."""
    planes = [image[..., channel] for channel in range(3)]
    if image.strides[2] != 1 and all(plane.flags.c_contiguous for plane in planes):
        import cv2

        data = message_buffer(image.size)
        target = np.frombuffer(data, np.uint8).reshape(image.shape)
        merged = cv2.merge(planes, dst=target)
        if merged.ctypes.data == target.ctypes.data:
            return data
    return _uint8_array(np.ascontiguousarray(image))


def rgb_image(header, image: np.ndarray):
    from sensor_msgs.msg import Image

    image = np.asarray(image, dtype=np.uint8)
    msg = Image(header=header, height=image.shape[0], width=image.shape[1], encoding="rgb8", is_bigendian=0,
                step=image.shape[1] * 3, **fast_fields(Image))
    msg.data = (_interleaved(image) if image.ndim == 3 and image.shape[2] == 3
                else _uint8_array(np.ascontiguousarray(image)))
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


# ------------------------------------------------------------------------------------------------ point clouds

def _cloud_message(header, dtype: np.dtype, count: int, data: array.array):
    from sensor_msgs.msg import PointCloud2, PointField

    fields = [PointField(name=name, offset=offset, datatype=datatype, count=1)
              for name, offset, datatype in _point_field_specs(dtype)]
    msg = PointCloud2(header=header, height=1, width=count, fields=fields, is_bigendian=False,
                      point_step=dtype.itemsize, row_step=dtype.itemsize * count, is_dense=True,
                      **fast_fields(PointCloud2))
    msg.data = data
    return msg


def point_cloud(header, points: np.ndarray):
    """sensor_msgs/PointCloud2 of a structured array (one PointField per named field, dense, little-endian)."""
    points = np.ascontiguousarray(points)
    return _cloud_message(header, points.dtype, len(points), _uint8_array(points))


def point_cloud_to_array(msg) -> np.ndarray:
    """Structured array of a PointCloud2 (the reverse of ``point_cloud``; used by tests and the bench)."""
    names = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
    dtype = np.dtype({"names": [f.name for f in msg.fields],
                      "formats": [("<" if not msg.is_bigendian else ">") + names[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    return np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width * msg.height)


def voxel_cloud(header, occupied: np.ndarray, probability: np.ndarray, labels: np.ndarray,
                grid: OccGridSpec = OCC3D_GRID, max_points: int | None = None):
    """PointCloud2 of occupied voxel centres: x, y, z, rgb (class colour), probability, label; at most
    ``max_points`` of them, the most probable first (RViz stalls above a few hundred thousand points), in grid
    order. Written column by column straight into the message buffer, seen as [N, 6] 4-byte words."""
    occupied = np.asarray(occupied)
    flat = np.flatnonzero(occupied)  # C order, the order of np.nonzero
    probabilities = np.asarray(probability).reshape(-1)
    if max_points is not None and len(flat) > max_points:
        keep = np.argpartition(-probabilities[flat], max_points - 1)[:max_points]
        keep.sort()  # grid order, as without a cap
        flat = flat[keep]
    data = message_buffer(len(flat) * VOXEL_DTYPE.itemsize)
    words = np.frombuffer(data, "<f4").reshape(len(flat), 6)
    voxel_centres(grid, tuple(occupied.shape)).write(flat, words)
    label = np.take(np.asarray(labels).reshape(-1), flat)
    unsigned = words.view("<u4")
    if label.dtype == np.uint8:
        unsigned[:, 3] = np.take(_PACKED_BY_LABEL, label)
    else:
        unsigned[:, 3] = _PACKED_PALETTE[np.minimum(label, len(_PACKED_PALETTE) - 1)].view(np.uint32)
    words[:, 4] = np.take(probabilities, flat)
    unsigned[:, 5] = label
    return _cloud_message(header, VOXEL_DTYPE, len(flat), data)


def query_cloud(header, points: np.ndarray, relevance: np.ndarray):
    """PointCloud2 x, y, z, intensity (= the query's relevance in [0, 1], which RViz's Intensity colouring
    shows)."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    data = message_buffer(len(points) * QUERY_DTYPE.itemsize)
    words = np.frombuffer(data, "<f4").reshape(len(points), 4)
    for axis in range(3):  # column by column: a strided [N, 3] block copy is three times slower
        words[:, axis] = points[:, axis]
    words[:, 3] = np.asarray(relevance, dtype=np.float32).reshape(-1)
    return _cloud_message(header, QUERY_DTYPE, len(points), data)


# --------------------------------------------------------------------------------------------- grids

def _any_along_z(volume: np.ndarray) -> np.ndarray:
    """[X, Y] bool: some byte of the column is non-zero. A uint8 column of 8k bytes is k uint64 words, so the
    test is k word ORs per column instead of a byte-wise reduction."""
    if volume.dtype.itemsize != 1 or volume.shape[2] % 8 or not volume.shape[2] or not volume.flags.c_contiguous:
        return volume.any(axis=2)
    words = volume.view(np.uint64)
    column = words[..., 0].copy()
    for index in range(1, words.shape[2]):
        column |= words[..., index]
    return column != 0


def bird_eye_view(occupied: np.ndarray, labels: np.ndarray, camera_visible: np.ndarray,
                  ground_labels: tuple[int, ...]) -> np.ndarray:
    """[ix, iy] int8 map: 100 where a column holds an occupied non-ground voxel, 0 where some voxel of the column is
    camera-visible and none is an obstacle, -1 where no camera sees the column. Ground classes (road, sidewalk,
    terrain, other flat) are drivable or walkable surface, not obstacles, so they count as free."""
    non_ground = _non_ground_lut(tuple(ground_labels))
    if occupied.dtype == bool and labels.dtype == np.uint8 and occupied.shape == labels.shape:
        import cv2

        # one pass over the volume: LUT (label -> not ground) AND occupied, as bytes
        obstacle_bytes = cv2.LUT(np.ascontiguousarray(labels).reshape(-1, labels.shape[-1]), non_ground)
        obstacle_bytes &= np.ascontiguousarray(occupied).view(np.uint8).reshape(obstacle_bytes.shape)
        obstacle = _any_along_z(obstacle_bytes.reshape(labels.shape))
    else:
        obstacle = (occupied & non_ground.astype(bool)[labels]).any(axis=2)
    visible = np.asarray(camera_visible)
    seen = _any_along_z(np.ascontiguousarray(visible.view(np.uint8) if visible.dtype == bool else visible))
    bev = seen.astype(np.int8) - np.int8(1)  # 0 seen, -1 unknown
    bev[obstacle] = GRID_OCCUPIED
    return bev


def occupancy_grid(header, bev: np.ndarray, grid: OccGridSpec = OCC3D_GRID):
    """nav_msgs/OccupancyGrid of a [ix, iy] map: cell (ix, iy) is data[iy * width + ix] (x = columns)."""
    from nav_msgs.msg import OccupancyGrid

    msg = OccupancyGrid(header=header, **fast_fields(OccupancyGrid))
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(grid.voxel_size[0])
    msg.info.width, msg.info.height = int(bev.shape[0]), int(bev.shape[1])
    msg.info.origin.position.x, msg.info.origin.position.y = float(grid.origin[0]), float(grid.origin[1])
    msg.info.origin.position.z = 0.0
    msg.info.origin.orientation.w = 1.0
    data = array.array("b")
    data.frombytes(np.ascontiguousarray(bev.T, dtype=np.int8).reshape(-1).view(np.uint8))
    msg.data = data
    return msg


def semantic_occupancy(header, labels: np.ndarray, camera_visible: np.ndarray, class_names,
                       grid: OccGridSpec = OCC3D_GRID):
    """distillnerf_msgs/SemanticOccupancy (layout index = (ix * size_y + iy) * size_z + iz, i.e. C order)."""
    from distillnerf_msgs.msg import SemanticOccupancy

    msg = SemanticOccupancy(header=header, **fast_fields(SemanticOccupancy))
    msg.origin.x, msg.origin.y, msg.origin.z = (float(v) for v in grid.origin)
    msg.resolution = np.asarray(grid.voxel_size, dtype=np.float32)
    msg.size = np.asarray(labels.shape, dtype=np.uint32)
    msg.class_names = list(class_names)
    msg.labels = _uint8_array(labels.astype(np.uint8, copy=False))
    msg.camera_visible = _uint8_array(camera_visible.astype(np.uint8, copy=False))
    return msg
