"""ROS message <-> numpy conversions: inputs (with every malformed case), and the output messages' layouts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS message packages are not installed")
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from distillnerf.occ3d import OccGridSpec  # noqa: E402
from distillnerf_ros import conversions as cv  # noqa: E402
from distillnerf_ros import output_messages as out  # noqa: E402

RNG = np.random.default_rng(0)


def raw(image: np.ndarray, encoding: str, pad: int = 0) -> Image:
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    rows = np.zeros((height, width * channels + pad), np.uint8)
    rows[:, : width * channels] = image.reshape(height, -1)
    msg = Image(height=height, width=width, encoding=encoding, step=width * channels + pad)
    msg.data = rows.tobytes()
    return msg


def jpeg(image_rgb: np.ndarray, quality: int = 95) -> CompressedImage:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    msg = CompressedImage(format="jpeg")
    msg.data = data.tobytes()
    return msg


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_raw_encodings_become_rgb_with_row_padding(encoding):
    rgb = RNG.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    source = {"rgb8": rgb, "bgr8": rgb[..., ::-1],
              "rgba8": np.dstack([rgb, np.full((5, 7), 9, np.uint8)]),
              "bgra8": np.dstack([rgb[..., ::-1], np.full((5, 7), 9, np.uint8)])}[encoding]
    msg = raw(np.ascontiguousarray(source), encoding, pad=3)
    assert cv.raw_image_size(msg) == (7, 5)
    assert np.array_equal(cv.raw_image_to_rgb(msg), rgb)


def test_mono8_becomes_grey_rgb():
    grey = RNG.integers(0, 255, (4, 6), dtype=np.uint8)
    out = cv.raw_image_to_rgb(raw(grey, "mono8"))
    assert out.shape == (4, 6, 3) and np.array_equal(out[..., 1], grey)


@pytest.mark.parametrize("mutate, kind", [
    (lambda m: setattr(m, "encoding", "16UC1"), "encoding"),
    (lambda m: setattr(m, "encoding", "yuv422"), "encoding"),
    (lambda m: setattr(m, "data", b""), "empty"),
    (lambda m: setattr(m, "height", 0), "empty"),
    (lambda m: setattr(m, "data", bytes(m.data)[:-10]), "size"),
    (lambda m: setattr(m, "step", 3), "size"),
])
def test_bad_raw_images_raise_input_errors(mutate, kind):
    msg = raw(RNG.integers(0, 255, (4, 6, 3), dtype=np.uint8), "rgb8")
    mutate(msg)
    with pytest.raises(cv.InputError) as caught:
        cv.raw_image_to_rgb(msg)
    assert caught.value.kind == kind


def test_jpeg_size_is_read_from_the_header_and_reduced_decoding_keeps_enough_pixels():
    image = np.zeros((90, 160, 3), np.uint8)
    image[:, :80] = (255, 0, 0)
    msg = jpeg(image)
    assert cv.compressed_image_size(msg) == (160, 90)
    full = cv.decode_compressed(msg)
    assert full.shape == (90, 160, 3) and full[45, 10, 0] > 200 and full[45, 10, 2] < 60  # RGB, not BGR
    assert cv.decode_compressed(msg, target_size=(40, 20)).shape == (23, 40, 3)  # 1/4 still covers 40x20
    assert cv.decode_compressed(msg, target_size=(41, 20)).shape == (45, 80, 3)  # 1/4 would be too narrow


def test_png_size_is_read_from_the_header():
    ok, data = cv2.imencode(".png", np.zeros((12, 34, 3), np.uint8))
    msg = CompressedImage(format="png")
    msg.data = data.tobytes()
    assert cv.compressed_image_size(msg) == (34, 12)
    assert cv.decode_compressed(msg).shape == (12, 34, 3)


@pytest.mark.parametrize("corrupt", [
    lambda d: d[: len(d) // 2],  # truncated: would decode to a grey-padded image without the EOI check
    lambda d: b"not an image at all",
    lambda d: b"",
    lambda d: d[:2] + b"\x00" * 40 + d[-2:],  # markers destroyed
])
def test_corrupt_jpeg_raises_input_errors(corrupt):
    msg = jpeg(RNG.integers(0, 255, (32, 48, 3), dtype=np.uint8))
    msg.data = corrupt(bytes(msg.data))
    with pytest.raises(cv.InputError) as caught:
        cv.decode_compressed(msg)
    assert caught.value.kind in {"jpeg", "empty"}


def test_real_nuscenes_jpeg_header_and_reduced_decode(nuscenes_tiny):
    file = sorted((nuscenes_tiny / "samples" / "CAM_FRONT").glob("*.jpg"))[0]
    msg = CompressedImage(format="jpeg")
    msg.data = file.read_bytes()
    assert cv.compressed_image_size(msg) == (1600, 900)
    assert cv.decode_compressed(msg, target_size=(400, 224)).shape == (225, 400, 3)


def camera_info_msg(k, width=1600, height=900) -> CameraInfo:
    msg = CameraInfo(width=width, height=height)
    msg.k = [float(v) for v in np.asarray(k, dtype=np.float64).reshape(-1)]
    return msg


def test_camera_info_checks_and_rescaling():
    k = np.array([[1266.4, 0, 816.3], [0, 1266.4, 491.5], [0, 0, 1]])
    assert np.allclose(cv.camera_info_intrinsics(camera_info_msg(k)), k)
    scaled = cv.scale_intrinsics(k, (1600, 900), (704, 256))
    assert scaled[0, 0] == pytest.approx(1266.4 * 0.44) and scaled[1, 1] == pytest.approx(1266.4 * 256 / 900)
    assert scaled[0, 2] == pytest.approx(816.3 * 0.44) and scaled[1, 2] == pytest.approx(491.5 * 256 / 900)
    for bad in (np.zeros((3, 3)), np.where(np.eye(3) > 0, np.nan, 0.0), np.diag([-1.0, 1.0, 1.0])):
        with pytest.raises(cv.InputError) as caught:
            cv.camera_info_intrinsics(camera_info_msg(bad))
        assert caught.value.kind == "intrinsics"
    with pytest.raises(cv.InputError):
        cv.camera_info_intrinsics(camera_info_msg(k, width=0))


def test_scaled_intrinsics_project_a_point_to_the_resized_pixel():
    k = np.array([[1000.0, 0, 800], [0, 1000.0, 450], [0, 0, 1]])
    point = np.array([1.0, -0.5, 10.0])
    u, v, w = k @ point
    scaled = cv.scale_intrinsics(k, (1600, 900), (400, 225))
    us, vs, ws = scaled @ point
    assert us / ws == pytest.approx(u / w / 4) and vs / ws == pytest.approx(v / w / 4)


def test_depth_image_is_32fc1_metres_with_nan_as_zero():
    depth = np.array([[1.5, np.nan], [np.inf, 80.0]], np.float32)
    msg = out.depth_image(Header(frame_id="CAM_FRONT"), depth)
    assert msg.encoding == "32FC1" and msg.step == 8 and (msg.width, msg.height) == (2, 2)
    back = np.frombuffer(bytes(msg.data), np.float32).reshape(2, 2)
    assert back[0, 0] == 1.5 and back[0, 1] == 0.0 and back[1, 0] == 0.0 and back[1, 1] == 80.0


def test_camera_info_output_carries_k_and_p():
    k = np.array([[100.0, 0, 50], [0, 90.0, 20], [0, 0, 1]])
    msg = out.camera_info(Header(frame_id="CAM_BACK"), k, 100, 40)
    assert (msg.width, msg.height) == (100, 40) and np.allclose(np.reshape(msg.k, (3, 3)), k)
    assert np.allclose(np.reshape(msg.p, (3, 4))[:, :3], k)


def test_voxel_cloud_layout_positions_colours_and_labels():
    occupied = np.zeros((200, 200, 16), bool)
    occupied[0, 0, 0] = occupied[100, 150, 5] = True
    labels = np.zeros((200, 200, 16), np.uint8)
    labels[100, 150, 5] = 4  # car
    probability = np.full((200, 200, 16), 0.75, np.float32)
    msg = out.voxel_cloud(Header(frame_id="base_link"), occupied, probability, labels)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "probability", "label"]
    assert msg.point_step == 24 and msg.width == 2 and len(msg.data) == 48
    points = out.point_cloud_to_array(msg)
    assert np.allclose([points["x"][0], points["y"][0], points["z"][0]], [-39.8, -39.8, -0.8])
    assert np.allclose([points["x"][1], points["y"][1], points["z"][1]], [0.2, 20.2, 1.2], atol=1e-5)
    assert list(points["label"]) == [0, 4] and np.allclose(points["probability"], 0.75)
    packed = points["rgb"].view(np.uint32)
    assert [(p >> 16) & 255 for p in packed][1] == 0 and (packed[1] >> 8) & 255 == 150 and packed[1] & 255 == 245


def test_empty_cloud_is_valid():
    msg = out.query_cloud(Header(), np.zeros((0, 3)), np.zeros(0))
    assert msg.width == 0 and len(msg.data) == 0 and [f.name for f in msg.fields] == ["x", "y", "z", "intensity"]


def test_bird_eye_view_grid_values_and_row_major_layout():
    occupied = np.zeros((200, 200, 16), bool)
    labels = np.full((200, 200, 16), 17, np.uint8)
    visible = np.zeros((200, 200, 16), np.uint8)
    visible[:100] = 1
    occupied[10, 20, 3], labels[10, 20, 3] = True, 4  # a car: occupied
    occupied[30, 40, 0], labels[30, 40, 0] = True, 11  # road: free
    occupied[150, 5, 2], labels[150, 5, 2] = True, 15  # a building nobody sees: still occupied
    bev = out.bird_eye_view(occupied, labels, visible, (11, 12, 13, 14))
    assert bev[10, 20] == 100 and bev[30, 40] == 0 and bev[150, 5] == 100 and bev[150, 6] == -1 and bev[50, 50] == 0
    msg = out.occupancy_grid(Header(frame_id="base_link"), bev)
    assert (msg.info.width, msg.info.height) == (200, 200) and msg.info.resolution == pytest.approx(0.4)
    assert (msg.info.origin.position.x, msg.info.origin.position.y) == (-40.0, -40.0)
    data = np.asarray(msg.data, np.int8)
    assert data[20 * 200 + 10] == 100 and data[40 * 200 + 30] == 0 and data[5 * 200 + 151] == -1


def test_semantic_occupancy_layout_matches_the_message_definition():
    pytest.importorskip("distillnerf_msgs.msg", reason="distillnerf_msgs is not built")
    labels = RNG.integers(0, 18, (4, 3, 2), dtype=np.uint8)
    visible = (labels % 2).astype(np.uint8)
    msg = out.semantic_occupancy(Header(frame_id="base_link"), labels, visible, ["a"] * 17 + ["free"],
                                OccGridSpec.from_corner((-1.0, -2.0, -3.0), (0.4, 0.4, 0.4), (4, 3, 2)))
    assert list(msg.size) == [4, 3, 2] and msg.origin.z == -3.0
    flat = np.frombuffer(bytes(msg.labels), np.uint8)
    ix, iy, iz = 3, 1, 1
    assert flat[(ix * 3 + iy) * 2 + iz] == labels[ix, iy, iz]
    assert np.array_equal(np.frombuffer(bytes(msg.camera_visible), np.uint8), visible.reshape(-1))


def test_voxel_cloud_cap_keeps_the_most_probable_voxels():
    import numpy as np
    from std_msgs.msg import Header

    rng = np.random.default_rng(0)
    probability = rng.random((200, 200, 16)).astype(np.float32)
    occupied = probability > 0.5
    labels = np.full((200, 200, 16), 4, np.uint8)
    full = out.point_cloud_to_array(out.voxel_cloud(Header(frame_id="base_link"), occupied, probability, labels))
    capped = out.point_cloud_to_array(out.voxel_cloud(Header(frame_id="base_link"), occupied, probability, labels,
                                                    max_points=1000))
    assert len(full) == int(occupied.sum()) and len(capped) == 1000
    assert capped["probability"].min() >= np.sort(full["probability"])[-1000]


def test_decode_resizes_when_opencv_ignores_the_reduce_flag(monkeypatch):
    """Some OpenCV builds decode at full size whatever the IMREAD_REDUCED_* flag: the image must still come out
    at the reduced size (the intrinsics are scaled for it), not at a wrong size."""
    image = np.zeros((90, 160, 3), np.uint8)
    image[:, :80] = (255, 0, 0)
    image[60:, 120:] = (0, 0, 255)
    msg = jpeg(image)
    honest = cv.decode_compressed(msg, target_size=(40, 20))
    real_imdecode = cv2.imdecode
    flags = []

    def ignoring_reduction(buffer, flag):
        flags.append(flag)
        return real_imdecode(buffer, cv2.IMREAD_COLOR | (flag & cv2.IMREAD_IGNORE_ORIENTATION))

    monkeypatch.setattr(cv2, "imdecode", ignoring_reduction)
    resized = cv.decode_compressed(msg, target_size=(40, 20))
    assert flags and flags[-1] & ~cv2.IMREAD_IGNORE_ORIENTATION == cv2.IMREAD_REDUCED_COLOR_4
    assert resized.shape == honest.shape == (23, 40, 3)
    assert np.abs(resized.astype(int) - honest.astype(int)).mean() < 12  # the same picture, RGB order kept
    assert resized[5, 5, 0] > 200 and resized[20, 35, 2] > 200


def test_decoded_size_is_the_header_size_whatever_the_exif_orientation():
    """A JPEG whose EXIF says 'rotate 90' keeps the sensor's pixel grid, which its intrinsics describe."""
    import struct

    image = np.zeros((90, 160, 3), np.uint8)
    image[:, :80] = (255, 0, 0)
    msg = jpeg(image)
    tiff = b"II*\x00" + struct.pack("<IHHHIHHI", 8, 1, 0x0112, 3, 1, 6, 0, 0)  # IFD0: Orientation = 6
    app1 = b"\xff\xe1" + struct.pack(">H", 8 + len(tiff)) + b"Exif\x00\x00" + tiff
    data = bytes(msg.data)
    msg.data = data[:2] + app1 + data[2:]
    assert cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR).shape == (160, 90, 3)
    assert cv.compressed_image_size(msg) == (160, 90)
    assert cv.decode_compressed(msg).shape == (90, 160, 3)
    assert cv.decode_compressed(msg, target_size=(40, 20)).shape == (23, 40, 3)


def test_png_reduced_decode_keeps_opencvs_rounded_down_size():
    ok, data = cv2.imencode(".png", RNG.integers(0, 255, (90, 160, 3), dtype=np.uint8))
    msg = CompressedImage(format="png")
    msg.data = data.tobytes()
    decoded = cv.decode_compressed(msg, target_size=(40, 20))
    assert decoded.shape[:2] in {(22, 40), (23, 40)} and decoded.shape[0] >= 20


def test_reduction_factor_and_reduced_size():
    assert cv.reduction_factor((1600, 900), (228, 128)) == 4
    assert cv.reduction_factor((1600, 900), (200, 112)) == 8
    assert cv.reduction_factor((1600, 900), (801, 100)) == 1
    assert cv.reduction_factor((1600, 900), None) == 1
    assert cv.reduced_size((1600, 900), 8) == (200, 113) and cv.reduced_size((1600, 900), 1) == (1600, 900)
