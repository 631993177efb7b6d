"""Rectification of distorted camera images (pure numpy + OpenCV, no ROS needed).

Geometry is checked against OpenCV's own forward models: dots are projected with ``cv2.projectPoints`` /
``cv2.fisheye.projectPoints`` into a distorted image, rectified, and must land where the rectified pinhole
camera puts them, at full size and at half size (the image area-reduced as libjpeg's 1/2 decode does).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from distillnerf_ros.conversions import InputError
from distillnerf_ros.rectification import Rectifier, RectifierCache, rectifier_from_camera_info

WIDTH, HEIGHT = 640, 480
K = np.array([[400.0, 0.0, 318.7], [0.0, 402.0, 241.3], [0.0, 0.0, 1.0]])
ZOOMED_OUT_P = np.array([[330.0, 0.0, 325.0, 0.0], [0.0, 332.0, 236.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
BLOB_SIGMA = 1.5  # px at full size


def rotation_y(degrees: float) -> np.ndarray:
    return cv2.Rodrigues(np.array([0.0, np.radians(degrees), 0.0]))[0]


def camera_info(model="plumb_bob", d=(0.0,) * 5, k=K, p=None, r=None, width=WIDTH, height=HEIGHT, stamp=0):
    p = np.hstack([k, np.zeros((3, 1))]) if p is None else p
    r = np.eye(3) if r is None else r
    return SimpleNamespace(distortion_model=model, d=list(d), k=np.asarray(k).reshape(-1),
                           p=np.asarray(p).reshape(-1), r=np.asarray(r).reshape(-1), width=width, height=height,
                           header=SimpleNamespace(stamp=stamp))


def target_pixels() -> np.ndarray:
    """Where the dots must appear in the rectified image: a grid reaching to 30 px from the corners."""
    u, v = np.meshgrid(np.linspace(30, WIDTH - 30, 7), np.linspace(30, HEIGHT - 30, 5))
    return np.stack([u.ravel(), v.ravel()], axis=1)


def camera_points(targets: np.ndarray, new_k: np.ndarray, r: np.ndarray) -> np.ndarray:
    """3D points (camera frame, depth ~1) whose rectified projection is ``targets``."""
    rays = np.linalg.inv(new_k) @ np.vstack([targets.T, np.ones(len(targets))])
    return (r.T @ rays).T


def distorted_pixels(points: np.ndarray, model: str, d) -> np.ndarray:
    zero = np.zeros(3)
    if model == "equidistant":
        pixels, _ = cv2.fisheye.projectPoints(points.reshape(-1, 1, 3), zero, zero, K, np.asarray(d, float))
    else:
        pixels, _ = cv2.projectPoints(points, zero, zero, K, np.asarray(d, float))
    return pixels.reshape(-1, 2)


def dots_image(centres: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 of Gaussian dots at sub-pixel ``centres`` (pixel centres at integers, as OpenCV)."""
    image = np.zeros((HEIGHT, WIDTH), np.float64)
    radius = int(np.ceil(5 * BLOB_SIGMA))
    for x, y in centres:
        x0, y0 = int(round(x)) - radius, int(round(y)) - radius
        ys, xs = np.mgrid[y0:y0 + 2 * radius + 1, x0:x0 + 2 * radius + 1]
        blob = 250.0 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * BLOB_SIGMA ** 2))
        image[y0:y0 + 2 * radius + 1, x0:x0 + 2 * radius + 1] += blob
    grey = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return np.dstack([grey, grey, grey])


def centroid(image: np.ndarray, near: np.ndarray, radius: int) -> np.ndarray:
    x0, y0 = int(round(near[0])) - radius, int(round(near[1])) - radius
    window = image[y0:y0 + 2 * radius + 1, x0:x0 + 2 * radius + 1, 0].astype(np.float64)
    ys, xs = np.mgrid[y0:y0 + 2 * radius + 1, x0:x0 + 2 * radius + 1]
    return np.array([(window * xs).sum(), (window * ys).sum()]) / window.sum()


def centroid_errors(rectified: np.ndarray, expected: np.ndarray, radius: int) -> np.ndarray:
    return np.array([np.linalg.norm(centroid(rectified, e, radius) - e) for e in expected])


CASES = {
    "plumb_bob": ("plumb_bob", [-0.3, 0.1, 0.001, -0.0005, 0.0], None, None),
    "rational_polynomial": ("rational_polynomial", [-0.25, 0.08, 0.0005, -0.0008, 0.0, 0.05, 0.01, 0.0], None,
                            None),
    "equidistant": ("equidistant", [-0.02, 0.005, -0.001, 0.0002], None, None),
    "plumb_bob_with_P": ("plumb_bob", [-0.3, 0.1, 0.0, 0.0, 0.0], ZOOMED_OUT_P, None),
    "no_distortion_with_R": ("plumb_bob", [0.0] * 5, None, rotation_y(3.0)),
}


@pytest.mark.parametrize("case", CASES)
def test_dots_land_on_the_rectified_pinhole_projection_at_full_and_half_size(case):
    model, d, p, r = CASES[case]
    rectifier = rectifier_from_camera_info(camera_info(model, d, p=p, r=r))
    expected_k = K if p is None else p[:, :3]
    assert not rectifier.is_identity
    assert np.allclose(rectifier.intrinsics, expected_k)

    targets = target_pixels()
    seen = distorted_pixels(camera_points(targets, expected_k, np.eye(3) if r is None else r), model, d)
    inside = np.all((seen >= 12) & (seen <= [WIDTH - 13, HEIGHT - 13]), axis=1)  # whole dots on the sensor
    assert inside.sum() >= 25
    targets, distorted = targets[inside], dots_image(seen[inside])
    full = rectifier.rectify(distorted)
    assert full.shape == distorted.shape and full.dtype == np.uint8
    full_errors = centroid_errors(full, targets, radius=14)
    assert full_errors.max() < 0.2, full_errors  # measured <= 0.05 px

    # libjpeg's 1/2 decode averages 2x2 blocks: pixel centre u at full size is (u + 0.5) / 2 - 0.5 at half
    half = rectifier.rectify(cv2.resize(distorted, (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_AREA))
    assert half.shape == (HEIGHT // 2, WIDTH // 2, 3)
    half_errors = centroid_errors(half, (targets + 0.5) / 2 - 0.5, radius=8)
    assert half_errors.max() < 0.2, half_errors  # measured <= 0.07 px; K scaled as pixel edges would be 0.25 off


def test_the_issues_plumb_bob_moves_a_corner_point_by_many_pixels():
    d = [-0.3, 0.1, 0.0, 0.0, 0.0]
    rectifier = rectifier_from_camera_info(camera_info("plumb_bob", d))
    corner_target = np.array([[40.0, 40.0]])
    seen = distorted_pixels(camera_points(corner_target, K, np.eye(3)), "plumb_bob", d)
    rectified = rectifier.rectify(dots_image(seen))
    landed = centroid(rectified, corner_target[0], radius=14)
    unrectified = centroid(dots_image(seen), seen[0], radius=8)
    assert np.linalg.norm(landed - corner_target[0]) < 0.5
    assert np.linalg.norm(landed - unrectified) > 5.0  # so "the same depth as d = 0" cannot happen any more


@pytest.mark.parametrize("model, d", [("plumb_bob", [0.0] * 5), ("rational_polynomial", [0.0] * 8),
                                      ("equidistant", [0.0] * 4), ("plumb_bob", []), ("", [])])
def test_zero_distortion_is_the_identity(model, d):
    rectifier = rectifier_from_camera_info(camera_info(model, d))
    image = np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    assert rectifier.is_identity
    assert rectifier.rectify(image) is image
    assert np.array_equal(rectifier.intrinsics, K)
    assert rectifier.maps_built == 0


def test_unset_p_and_r_mean_k_and_identity():
    info = camera_info("plumb_bob", [0.0] * 5, p=np.zeros((3, 4)), r=np.zeros((3, 3)))
    rectifier = rectifier_from_camera_info(info)
    assert rectifier.is_identity and np.array_equal(rectifier.intrinsics, K)


def test_p_gives_the_rectified_intrinsics():
    rectifier = Rectifier.create("plumb_bob", [-0.1, 0.0, 0.0, 0.0, 0.0], K, ZOOMED_OUT_P, None, WIDTH, HEIGHT)
    assert np.array_equal(rectifier.intrinsics, ZOOMED_OUT_P[:, :3])


@pytest.mark.parametrize("model, d, words", [
    ("foo", [0.0] * 5, ["'foo'", "plumb_bob", "rational_polynomial", "equidistant"]),
    ("plumb_bob", [0.1, 0.0, 0.0, 0.0], ["plumb_bob", "5", "got 4"]),
    ("rational_polynomial", [0.1, 0.0, 0.0, 0.0, 0.0], ["rational_polynomial", "8", "got 5"]),
    ("equidistant", [0.1, 0.0, 0.0, 0.0, 0.0], ["equidistant", "4", "got 5"]),
    ("plumb_bob", [np.nan, 0.0, 0.0, 0.0, 0.0], ["NaN"]),
])
def test_unusable_distortion_is_refused_with_a_clear_message(model, d, words):
    with pytest.raises(InputError) as error:
        rectifier_from_camera_info(camera_info(model, d))
    assert error.value.kind == "distortion"
    assert all(word in str(error.value) for word in words), str(error.value)


def test_bad_intrinsics_are_refused():
    with pytest.raises(InputError) as error:
        Rectifier.create("plumb_bob", [-0.1, 0, 0, 0, 0], np.zeros((3, 3)), None, None, WIDTH, HEIGHT)
    assert error.value.kind == "intrinsics"


def test_cache_returns_one_rectifier_per_camera_info_content():
    cache = RectifierCache()
    d = [-0.3, 0.1, 0.0, 0.0, 0.0]
    first = cache.get(camera_info("plumb_bob", d, stamp=1))
    assert cache.get(camera_info("plumb_bob", d, stamp=2)) is first  # a new header is the same calibration
    assert cache.get(camera_info("plumb_bob", [-0.2, 0.1, 0.0, 0.0, 0.0])) is not first
    assert len(cache) == 2
    with pytest.raises(InputError):
        cache.get(camera_info("foo"))
    assert len(cache) == 2


def test_maps_are_built_once_per_size_even_from_many_threads():
    rectifier = rectifier_from_camera_info(camera_info("plumb_bob", [-0.3, 0.1, 0.0, 0.0, 0.0]))
    image = np.random.default_rng(1).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(lambda _: rectifier.rectify(image), range(8)))
    assert rectifier.maps_built == 1
    assert all(np.array_equal(out, outputs[0]) for out in outputs)
    rectifier.rectify(image[::2, ::2].copy())
    rectifier.rectify(image)
    assert rectifier.maps_built == 2


def test_a_real_camera_info_message():
    camera_info_type = pytest.importorskip("sensor_msgs.msg", reason="ROS message packages are not installed")
    msg = camera_info_type.CameraInfo(width=WIDTH, height=HEIGHT, distortion_model="equidistant")
    msg.d = [-0.02, 0.005, -0.001, 0.0002]
    msg.k = K.reshape(-1)
    rectifier = RectifierCache().get(msg)  # r and p left unset (zeros): identity rotation, rectified K = K
    assert not rectifier.is_identity and np.array_equal(rectifier.intrinsics, K)
