"""One replayed keyframe and the node's outputs for it -> a ``FrameResult`` the report scores."""

from __future__ import annotations

import numpy as np

from distillnerf_ros.conversions import stamp_to_nanoseconds
from distillnerf_ros.interface import NODE_NAME

from .ground_truth import GroundTruthIndex
from .options import DemoError
from .results import FrameResult, resample_nearest


def decode_depth(message) -> np.ndarray:
    if message.encoding != "32FC1":
        raise DemoError(f"depth image encoding {message.encoding}, expected 32FC1")
    data = np.frombuffer(bytes(message.data), dtype=">f4" if message.is_bigendian else "<f4")
    return data.reshape(message.height, message.step // 4)[:, :message.width].astype(np.float32)


def decode_jpeg(data: bytes) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DemoError("a replayed camera image is not a decodable JPEG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def frame_result(group, outputs: dict, cameras: list[str], latency_ms: float,
                 ground_truth: GroundTruthIndex | None, lidar: "LidarTruth | None" = None) -> FrameResult:
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage

    from distillnerf_ros.output_messages import point_cloud_to_array

    images = {}
    for message in group:
        channel = message.topic.split("/")[1]
        if message.topic.endswith("/image/compressed") and channel in cameras:
            images[channel] = deserialize_message(message.data, CompressedImage)
    stamp = images[cameras[0]].header.stamp
    frame = FrameResult(stamp_ns=stamp_to_nanoseconds(stamp),
                        inputs={c: decode_jpeg(bytes(images[c].data)) for c in cameras}, depth={},
                        latency_ms=latency_ms)
    for cam in cameras:
        depth = outputs.get(f"/{NODE_NAME}/output/{cam}/depth")
        if depth is not None:
            frame.depth[cam] = decode_depth(depth[1])
    grid = outputs.get(f"/{NODE_NAME}/output/occupancy_grid")
    if grid is not None:
        info = grid[1].info
        frame.occupancy_grid = np.asarray(grid[1].data, dtype=np.int8).reshape(info.height, info.width).T
    semantic = outputs.get(f"/{NODE_NAME}/output/semantic_occupancy")
    if semantic is not None:
        size = tuple(int(v) for v in semantic[1].size)
        frame.semantics = np.asarray(semantic[1].labels, dtype=np.uint8).reshape(size)
        frame.camera_visible = np.asarray(semantic[1].camera_visible, dtype=np.uint8).reshape(size)
    processing = outputs.get(f"/{NODE_NAME}/debug/processing_time_ms")
    if processing is not None:
        frame.processing_ms = float(processing[1].data)
    query = outputs.get(f"/{NODE_NAME}/output/feature_query")
    if query is not None:
        cloud = point_cloud_to_array(query[1])
        frame.query_points = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)
        frame.query_relevance = cloud["intensity"].astype(np.float64)
    if lidar is not None:
        for cam in cameras:
            if cam in frame.depth:
                stamp_us = stamp_to_nanoseconds(images[cam].header.stamp) // 1000
                truth = lidar.depth(cam, stamp_us, frame.depth[cam].shape)
                if truth is not None:
                    frame.depth_lidar[cam] = truth
    if ground_truth is not None:
        for cam in cameras:
            stamp_us = stamp_to_nanoseconds(images[cam].header.stamp) // 1000
            gt = ground_truth.depth(cam, stamp_us)
            if gt is not None and cam in frame.depth:
                frame.depth_gt[cam] = resample_nearest(gt, *frame.depth[cam].shape)
        first = images[cameras[0]].header.stamp
        occupancy = ground_truth.occupancy(cameras[0], stamp_to_nanoseconds(first) // 1000)
        if occupancy is not None:
            frame.semantics_gt, frame.mask_camera_gt = occupancy
    return frame
