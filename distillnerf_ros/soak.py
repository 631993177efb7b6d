"""``distillnerf soak-node``: the node in its own process, fed six healthy real cameras at a steady rate over
DDS for a while; prints what /diagnostics says about them (false dropouts, images received, inferences).

Every camera publishes every image, so every dropout the node reports is a false one. The node runs the shipped
checkpoint (or ``--random-weights``) and infers while the cameras stream, as on a vehicle.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

from distillnerf_ros.harness import add_frames_arguments, samples_of


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help="stream six healthy cameras into the node; count false dropouts",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_frames_arguments(parser)
    parser.add_argument("--raw", action="store_true", help="send sensor_msgs/Image rgb8 instead of JPEG")
    parser.add_argument("--rate", type=float, default=12.0, help="camera sets per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to stream")
    parser.add_argument("--random-weights", action="store_true", help="the tiny model with random weights")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import OccupancyGrid
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from distillnerf.rig import NUSCENES_CAMERAS
    from distillnerf_ros.harness import FramePlayer
    from distillnerf_ros.node_process import NodeProcess, ros_arguments

    samples = samples_of(args, "soak-node")
    if samples is None:
        return 2
    model = {"model_config": "tiny", "random_weights": True} if args.random_weights else {}
    node = NodeProcess(ros_arguments({"use_tf": False, "device": "cpu", "compressed": not args.raw,
                                      "warning_period": 0.0, **model})).start(300)
    context = rclpy.Context()
    rclpy.init(context=context)
    client = rclpy.create_node("soak_driver", context=context)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    diagnostics: list = []
    client.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, reliable)
    # a listener, so the node infers (with none it skips the model)
    client.create_subscription(OccupancyGrid, "/distillnerf/output/occupancy_grid", lambda msg: None, reliable)
    player = FramePlayer(client, cameras=NUSCENES_CAMERAS, compressed=not args.raw, reliable=True)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(client)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 30.0
        while not player.connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # input_qos auto settles on the publishers' QoS
        count, base = int(args.rate * args.seconds), client.get_clock().now().nanoseconds
        start = time.monotonic()
        for index in range(count):
            delay = start + index / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            player.publish_set(samples[index % len(samples)], base + int(index / args.rate * 1e9),
                               pace=min(0.02, 1.0 / args.rate / 12))
        time.sleep(3.0)  # the last sets and one more /diagnostics
        report(args, count, diagnostics[-1] if diagnostics else None, node)
    finally:
        stop.set()
        spinner.join(2.0)
        executor.shutdown()
        client.destroy_node()
        context.try_shutdown()
        node.stop()
    return 0


def report(args, sent: int, diagnostics, node) -> None:
    received, dropouts, inference = {}, {}, {}
    for status in diagnostics.status if diagnostics is not None else []:
        values = {kv.key: kv.value for kv in status.values}
        if " input " in status.name:
            camera = status.name.split(" input ")[1]
            received[camera], dropouts[camera] = int(values["received"]), int(values["dropouts"])
        elif status.name.endswith("inference"):
            inference = values
    warnings = sum("no images from" in line for line in node.lines)
    print(f"distillnerf soak-node: six {'raw rgb8' if args.raw else 'JPEG'} cameras at {args.rate:g} Hz for "
          f"{args.seconds:g} s ({sent} sets), {os.cpu_count()} CPU cores")
    print(f"  false dropouts: {sum(dropouts.values())} ({dropouts}); 'no images from' warnings: {warnings}")
    print(f"  images received per camera: {received}")
    print(f"  inferences: {inference.get('inferences')}, sets dropped for a newer one: "
          f"{inference.get('sets_dropped_newer_arrived')}, input QoS: {inference.get('input_qos')}")
