"""The node's outputs: one publisher per topic, and one inference result published to the topics that have a
listener (an output nobody subscribes to costs nothing).

One occupancy threshold (the backend applied the node's parameter): the occupied voxels, their labels and the
voxels a query scores all agree. Each output's build + publish time is recorded per set in ``stage_ms`` under
``output/<name>``, which ``distillnerf bench-node`` prints.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

from distillnerf.occ3d import GROUND_LABELS, OCC3D_CLASSES
from distillnerf.perception import QueryUnavailable


from distillnerf_ros import output_messages as out
from distillnerf_ros.interface import DEBUG_TOPICS, OUTPUT_QOS, OUTPUT_TOPICS, camera_output_topics


class OutputPublishers:
    def __init__(self, node, camera_names, model_camera_names, grid, query, stage_ms, health, log):
        """``query(text) -> (points, relevance)`` answers the feature query (the backend's)."""
        from distillnerf_msgs.msg import SemanticOccupancy
        from nav_msgs.msg import OccupancyGrid
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from std_msgs.msg import Float64

        self._names = list(model_camera_names)
        self._grid = grid
        self._query = query
        self._stage_ms = stage_ms
        self._health = health
        self._log = log
        self._query_unavailable_warned = False
        self.grid = node.create_publisher(OccupancyGrid, OUTPUT_TOPICS["occupancy_grid"], OUTPUT_QOS)
        self.voxels = node.create_publisher(PointCloud2, OUTPUT_TOPICS["occupancy"], OUTPUT_QOS)
        self.semantic = node.create_publisher(SemanticOccupancy, OUTPUT_TOPICS["semantic_occupancy"], OUTPUT_QOS)
        self.query = node.create_publisher(PointCloud2, OUTPUT_TOPICS["feature_query"], OUTPUT_QOS)
        self.depth, self.depth_info, self.rgb = {}, {}, {}
        for camera in camera_names:
            topics = camera_output_topics(camera)
            self.depth[camera] = node.create_publisher(Image, topics["depth"], OUTPUT_QOS)
            self.depth_info[camera] = node.create_publisher(CameraInfo, topics["camera_info"], OUTPUT_QOS)
            self.rgb[camera] = node.create_publisher(Image, topics["rgb"], OUTPUT_QOS)
        self.processing = node.create_publisher(Float64, DEBUG_TOPICS["processing_time_ms"], OUTPUT_QOS)
        self.latency = node.create_publisher(Float64, DEBUG_TOPICS["pipeline_latency_ms"], OUTPUT_QOS)
        self.results = [self.grid, self.voxels, self.semantic, self.query, *self.depth.values(),
                        *self.depth_info.values(), *self.rgb.values()]

    def anyone_listening(self) -> bool:
        return any(publisher.get_subscription_count() for publisher in self.results)

    @contextmanager
    def _timed(self, name: str):
        began = time.perf_counter()
        yield
        self._stage_ms[f"output/{name}"].append((time.perf_counter() - began) * 1e3)

    def publish(self, header, frames: dict, result, *, voxel_cap: int, publish_rgb: bool, query_text: str) -> None:
        probability = np.asarray(result.occupancy_probability, dtype=np.float32)
        occupied = np.asarray(result.occupied, dtype=bool)
        labels = np.asarray(result.semantics, dtype=np.uint8)
        visible = np.asarray(result.camera_visible, dtype=np.uint8)
        if self.grid.get_subscription_count():
            with self._timed("occupancy_grid"):
                bev = out.bird_eye_view(occupied, labels, visible, GROUND_LABELS)
                self.grid.publish(out.occupancy_grid(header, bev, self._grid))
        if self.voxels.get_subscription_count():
            with self._timed("occupancy"):
                self.voxels.publish(out.voxel_cloud(header, occupied, probability, labels, self._grid, voxel_cap))
        if self.semantic.get_subscription_count():
            with self._timed("semantic_occupancy"):
                self.semantic.publish(out.semantic_occupancy(header, labels, visible, OCC3D_CLASSES, self._grid))
        self._publish_cameras(header, frames, result, publish_rgb)
        self.publish_query(header, query_text)

    def _publish_cameras(self, header, frames: dict, result, publish_rgb: bool) -> None:
        timings = {"depth": 0.0, "camera_info": 0.0, "rgb": 0.0}
        for camera, frame in frames.items():
            index = self._names.index(camera)
            camera_header = type(header)(stamp=header.stamp, frame_id=frame.header.frame_id or camera)
            depth = result.depth[index]
            began = time.perf_counter()
            if self.depth[camera].get_subscription_count():
                self.depth[camera].publish(out.depth_image(camera_header, depth))
            built_depth = time.perf_counter()
            if self.depth_info[camera].get_subscription_count():
                self.depth_info[camera].publish(out.camera_info(camera_header, result.depth_intrinsics[index],
                                                               depth.shape[1], depth.shape[0]))
            built_info = time.perf_counter()
            if publish_rgb and self.rgb[camera].get_subscription_count():
                self.rgb[camera].publish(out.rgb_image(camera_header, result.rgb[index]))
            timings["depth"] += built_depth - began
            timings["camera_info"] += built_info - built_depth
            timings["rgb"] += time.perf_counter() - built_info
        for name, seconds in timings.items():
            if seconds:
                self._stage_ms[f"output/{name}"].append(seconds * 1e3)

    def publish_query(self, header, text: str) -> None:
        if not text:
            self._health.query_state = "no query"
            return
        if not self.query.get_subscription_count():
            return
        with self._timed("feature_query"):
            try:
                points, relevance = self._query(text)
            except QueryUnavailable as error:
                self._health.query_state = f"unavailable: {error}"
                if not self._query_unavailable_warned:
                    self._query_unavailable_warned = True
                    self._log.warning(f"feature query {text!r} not published: {error}")
                return
            self._health.query_state = f"{text!r}: {len(points)} points"
            self.query.publish(out.query_cloud(header, points, relevance))

    def query_changed(self) -> None:
        """A new query text: say again if it cannot be answered."""
        self._query_unavailable_warned = False
