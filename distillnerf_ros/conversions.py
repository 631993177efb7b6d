"""Input messages -> numpy, with numpy and OpenCV only (no cv_bridge needed; it is absent in many installs).

Every check a driver or a bag can fail is done here and raised as ``InputError`` with a ``kind`` (the node turns
it into a throttled warning and a diagnostics entry, never a crash); stamps convert here, both ways. The node's
output messages are built in ``output_messages``.
"""

from __future__ import annotations

import struct

import numpy as np

#: Raw encodings accepted on input: channels, and whether the channel order is BGR.
RAW_ENCODINGS = {"rgb8": (3, False), "bgr8": (3, True), "rgba8": (4, False), "bgra8": (4, True), "mono8": (1, False)}

class InputError(ValueError):
    """A message the node cannot use. ``kind`` groups warnings and diagnostics (e.g. ``encoding``, ``jpeg``)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# --------------------------------------------------------------------------------------------------- input side

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


#: libjpeg's reduced decodes, smallest first: (factor, OpenCV flag name).
_REDUCED_DECODES = ((8, "IMREAD_REDUCED_COLOR_8"), (4, "IMREAD_REDUCED_COLOR_4"), (2, "IMREAD_REDUCED_COLOR_2"))


def reduction_factor(size: tuple[int, int], target_size: tuple[int, int] | None) -> int:
    """The largest of 8, 4, 2 that keeps an image of ``size`` (w, h) at least ``target_size``; 1 if none does."""
    if target_size is not None:
        for factor, _ in _REDUCED_DECODES:
            if size[0] // factor >= target_size[0] and size[1] // factor >= target_size[1]:
                return factor
    return 1


def reduced_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    """(w, h) libjpeg gives when decoding at 1/``factor``: it rounds up."""
    return -(-size[0] // factor), -(-size[1] // factor)


def decode_compressed(msg, target_size: tuple[int, int] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB of a CompressedImage; with ``target_size`` (w, h) JPEG is decoded at the smallest libjpeg
    reduction (1/2, 1/4, 1/8) that stays at least that large, which is several times faster than full size.

    OpenCV's reduced decode was the fastest measured on the real frames (PIL's ``draft`` and PyTurboJPEG give the
    same pixels at 1/4, a few per cent slower; docs/node.md#benchmark). The decoded shape is checked: an OpenCV build that ignores the reduce
    flag gives the full image, which is then resized to the reduced size instead of passing on a wrong size. EXIF
    orientation is ignored: the intrinsics describe the sensor's pixel grid, the one the JPEG header gives.
    """
    import cv2

    width, height = compressed_image_size(msg)
    factor = reduction_factor((width, height), target_size)
    flag = getattr(cv2, dict(_REDUCED_DECODES)[factor]) if factor > 1 else cv2.IMREAD_COLOR
    image = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None or image.ndim != 3:
        raise InputError("jpeg", f"could not decode the compressed image ({msg.format!r})")
    expected = reduced_size((width, height), factor)
    # libjpeg rounds a reduced size up; OpenCV's other decoders resize to the rounded-down size: both are fine
    if (image.shape[1], image.shape[0]) not in {expected, (width // factor, height // factor)}:
        image = cv2.resize(image, expected, interpolation=cv2.INTER_AREA)
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


def set_stamp(stamp, nanoseconds: int) -> None:
    """Write integer nanoseconds into a builtin_interfaces/Time in place (exact: a float of seconds loses the
    last ~200 ns)."""
    stamp.sec, stamp.nanosec = divmod(int(nanoseconds), 1_000_000_000)


def nanoseconds_to_time(nanoseconds: int):
    """builtin_interfaces/Time of integer nanoseconds."""
    from builtin_interfaces.msg import Time

    time = Time()
    set_stamp(time, nanoseconds)
    return time
