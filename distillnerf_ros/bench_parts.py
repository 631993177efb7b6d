"""Parts of ``distillnerf bench-node``: the fixed-result backend, the subscriber sink, the direct timing of the
output builders, and the rate trial over DDS."""

from __future__ import annotations

import statistics
import threading
import time

#: The node's per-output timings, ``stage_ms["output/<key>"]`` (build + publish, ms per set; cameras summed).
OUTPUT_KEYS = ("occupancy_grid", "occupancy", "semantic_occupancy", "depth", "camera_info", "rgb", "feature_query")


class FixedResultBackend:
    """Returns one precomputed real result (and query answer) instantly, so a benchmark sees only the node's own
    work."""

    def __init__(self, perception, result, query=None):
        self.camera_names = perception.camera_names
        self.input_size = perception.input_size
        self.render_size = perception.render_size
        self.device = perception.device
        self.grid = getattr(perception, "grid", None)
        self.result = result
        self._query = query

    @property
    def voxel_grid(self):
        from distillnerf_ros import output_messages as out

        return self.grid or out.OCC3D_GRID

    def warmup(self) -> None:
        pass

    def infer(self, images, intrinsics, cam_to_ego, valid=None, occupancy_threshold=None):
        return self.result

    def query(self, text):
        from distillnerf.perception import QueryUnavailable

        if self._query is None:
            raise QueryUnavailable("the benchmark's model answered no query")
        return self._query


def output_topics(camera_names) -> dict[str, tuple[str, type]]:
    """{output key or camera/key: (fully qualified topic, message type)} of every result output of the node."""
    from distillnerf_msgs.msg import SemanticOccupancy
    from nav_msgs.msg import OccupancyGrid
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from distillnerf_ros.interface import NODE_NAME, OUTPUT_TOPICS, camera_output_topics

    def qualified(topic: str) -> str:
        return f"/{NODE_NAME}/{topic[2:]}" if topic.startswith("~/") else topic

    kinds = {"occupancy_grid": OccupancyGrid, "occupancy": PointCloud2, "semantic_occupancy": SemanticOccupancy,
             "feature_query": PointCloud2, "depth": Image, "camera_info": CameraInfo, "rgb": Image}
    topics = {key: (qualified(topic), kinds[key]) for key, topic in OUTPUT_TOPICS.items()}
    for camera in camera_names:
        for key, topic in camera_output_topics(camera).items():
            topics[f"{camera}/{key}"] = (qualified(topic), kinds[key])
    return topics


def sink(context, node_name: str, camera_names, skip=()):
    """A node with a RELIABLE reader (like RViz) on every output but those in ``skip``, so the node really builds
    and sends them. Raw subscriptions, never spun while timing: DDS delivers each message into the reader, and
    the subscriber's own work (taking it into Python) is not billed to the node, as with RViz in its own
    process. ``sink.received`` counts what ``drain`` takes."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    listener = rclpy.create_node(node_name, context=context)
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    listener.received = {}
    listener.topics = {}
    for key, (topic, kind) in output_topics(camera_names).items():
        if key in skip or key.split("/")[-1] in skip:  # a camera output's name skips it for every camera
            continue
        listener.topics[key] = topic
        listener.create_subscription(kind, topic, lambda msg, k=key: listener.received.__setitem__(
            k, listener.received.get(k, 0) + 1), qos, raw=True)
    return listener


def wait_for_subscriptions(node, listener, timeout: float = 10.0) -> None:
    """Until the node sees a reader on each topic of ``listener`` and none on the others (a reader of an earlier
    run may linger in the graph for a moment)."""
    wanted = set(listener.topics.values())
    every = {topic for topic, _ in output_topics(node.params.camera_names).values()}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all((node.count_subscribers(t) > 0) == (t in wanted) for t in every):
            return
        time.sleep(0.05)
    raise RuntimeError("bench-node: the sink's subscriptions were not matched within 10 s")


def drain(context, listener, timeout: float = 3.0) -> int:
    """Take what DDS delivered to ``listener`` (after the timing): the number of its topics that received."""
    import rclpy

    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(listener.received) < len(listener.topics):
        executor.spin_once(timeout_sec=0.05)
    executor.remove_node(listener)
    executor.shutdown()
    return len(listener.received)


def builder_timings(backend, grid, repeats: int = 30) -> dict[str, list]:
    """ms per set of each output builder on the fixed result (no publishing): for a node that records none."""
    import numpy as np
    from std_msgs.msg import Header

    from distillnerf.occ3d import GROUND_LABELS, OCC3D_CLASSES
    from distillnerf_ros import output_messages as out

    r, header = backend.result, Header(frame_id="base_link")
    occupied, labels = np.asarray(r.occupied, bool), np.asarray(r.semantics, np.uint8)
    probability, visible = np.asarray(r.occupancy_probability, np.float32), np.asarray(r.camera_visible, np.uint8)
    cameras = range(len(r.depth))
    builders = {
        "occupancy_grid": lambda: out.occupancy_grid(header, out.bird_eye_view(occupied, labels, visible,
                                                                             GROUND_LABELS), grid),
        "occupancy": lambda: out.voxel_cloud(header, occupied, probability, labels, grid),
        "semantic_occupancy": lambda: out.semantic_occupancy(header, labels, visible, OCC3D_CLASSES, grid),
        "depth": lambda: [out.depth_image(header, r.depth[i]) for i in cameras],
        "camera_info": lambda: [out.camera_info(header, r.depth_intrinsics[i], r.depth.shape[2], r.depth.shape[1])
                                for i in cameras],
        "rgb": lambda: [out.rgb_image(header, r.rgb[i]) for i in cameras],
    }
    if backend._query is not None:
        builders["feature_query"] = lambda: out.query_cloud(header, *backend._query)
    times = {}
    for key, build in builders.items():
        build()
        times[key] = []
        for _ in range(repeats):
            began = time.perf_counter()
            build()
            times[key].append((time.perf_counter() - began) * 1e3)
    return times


def rig_pose(camera: str):
    from distillnerf.rig import load_rig

    return load_rig("nuscenes").camera(camera).cam_to_ego


def _spin_in_background(executor):
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    return stop, thread


def measure_rates(args, backend, context, samples, threshold: float) -> None:
    """Play sets over DDS at each rate; the node spins in its own executor thread, as in deployment."""
    import rclpy
    from rclpy.parameter import Parameter

    from distillnerf.rig import NUSCENES_CAMERAS
    from distillnerf_ros.harness import FramePlayer
    from distillnerf_ros.node import DistillNerfNode

    print(f"\nInput rate over DDS (JPEG sets, reliable input QoS, every output subscribed, {args.seconds:.0f} s "
          "per rate):")
    print("  rate Hz   sent  synced  processed  dropped(newer won)  mean latency ms  sustained")
    for rate in [float(r) for r in args.rates.split(",") if r]:
        node = DistillNerfNode(backend=backend, context=context, parameter_overrides=[
            Parameter("use_tf", value=False), Parameter("warning_period", value=60.0),
            Parameter("input_qos", value="reliable"), Parameter("input_queue_depth", value=10),
            Parameter("occupancy_threshold", value=threshold), Parameter("query_text", value=args.query_text),
            Parameter("camera_timeout", value=30.0)])
        listener = sink(context, "rate_sink", NUSCENES_CAMERAS)
        player_node = rclpy.create_node("rate_player", context=context)
        player = FramePlayer(player_node, cameras=NUSCENES_CAMERAS, compressed=True, reliable=True)
        node_executor = rclpy.executors.SingleThreadedExecutor(context=context)
        node_executor.add_node(node)
        stop, thread = _spin_in_background(node_executor)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not player.connected():
            time.sleep(0.05)
        wait_for_subscriptions(node, listener)
        period = 1.0 / rate
        count = int(args.seconds * rate)
        start = time.monotonic()
        base = node.get_clock().now().nanoseconds  # stamps of now: the latency column is meaningful
        for index in range(count):
            delay = start + index * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            player.publish_set(samples[index % len(samples)], base + int(index * period * 1e9),
                               pace=min(0.004, period / 12))
        drain = time.monotonic() + 3.0
        while time.monotonic() < drain and node.counters["sets"] < count:
            time.sleep(0.05)
        time.sleep(0.5)
        synced, processed, dropped = node.counters["sets"], node.health.inferences, node.worker.slot.dropped
        latency = statistics.fmean(node.health.latency_ms) if node.health.latency_ms else float("nan")
        sustained = synced >= 0.95 * count and processed >= 0.95 * synced
        print(f"  {rate:7.1f} {count:6d} {synced:7d} {processed:10d} {dropped:19d} {latency:16.1f}  "
              f"{'yes' if sustained else 'no'}")
        stop.set()
        thread.join(5.0)
        node_executor.shutdown()
        node.close()
        listener.destroy_node()
        player_node.destroy_node()
