"""``distillnerf bench-node``: the node's own cost per camera set against the cost of decoding its input, and the
input rate it sustains.

The model is taken out of the measurement: the shipped checkpoint of ``--model-config`` (``cpu``, the model the
node deploys) runs once on the first real nuScenes set, and the node is then given a backend that returns that
result at once, with its real occupancy at the checkpoint's own threshold. What remains is the node's overhead:
the subscription callbacks (checks + synchronisation), conversion (JPEG decode or raw copy, resize) and building +
sending every output to live subscribers. The reference is the time to decode the same six JPEGs at full
resolution one after another on one thread, measured in the same run before, between and after the JPEG runs
(each run is set against the passes either side of it, so both see the same load on a shared machine). The
subscribers are real DDS readers in this
process that are never spun: the node pays for building, serialising and sending, and what a subscriber does
with a message (RViz runs in its own process) is not billed to the node. Then sets are played over DDS at
increasing rates to find the rate at which every set still reaches the synchroniser and the worker, with nothing
piling up (the queue to the worker holds one set by design, so a backlog shows up as dropped sets).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from distillnerf_ros.bench_parts import (FixedResultBackend, OUTPUT_KEYS, builder_timings, drain, rig_pose, sink,
                                         wait_for_subscriptions)
from distillnerf_ros.conversions import set_stamp
from distillnerf_ros.harness import add_frames_arguments, samples_of

#: Goals of the node's overhead per set, as a share of the full-resolution decode of its six JPEGs.
GOAL_ALL_OUTPUTS, GOAL_WITHOUT_VOLUMES = 0.35, 0.2
#: The two volume outputs left unsubscribed in run (c).
VOLUME_OUTPUTS = ("occupancy", "semantic_occupancy")


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help="measure the ROS node's own overhead per frame and its input rate",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_frames_arguments(parser)
    parser.add_argument("--frames", type=int, default=30, help="camera sets timed per run")
    parser.add_argument("--rates", default="5,10,20,40", help="input rates (Hz) tried over DDS, comma-separated")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each rate trial")
    parser.add_argument("--model-config", default="cpu", help="model whose outputs are published (its shipped "
                        "checkpoint unless --random-weights)")
    parser.add_argument("--random-weights", action="store_true",
                        help="seeded random weights instead of the shipped checkpoint (with --occupied-fraction)")
    parser.add_argument("--occupied-fraction", type=float, default=0.05,
                        help="with --random-weights: share of voxels published as occupied (random weights occupy "
                             "almost none at their threshold)")
    parser.add_argument("--query-text", default="car", help="feature query published every set ('' for none)")
    parser.add_argument("--skip-rate", action="store_true", help="only the per-frame overhead")
    parser.set_defaults(func=run)
    return parser


def summary(values) -> str:
    values = sorted(values)
    if not values:
        return "n/a"
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return f"mean {statistics.fmean(values):6.2f}  median {statistics.median(values):6.2f}  p95 {p95:6.2f} ms"


def load_result(args, samples):
    """(backend, threshold, description): the model's real result on the first set, returned instantly."""
    import numpy as np

    from distillnerf.checkpoint import shipped_checkpoint
    from distillnerf.perception import Perception, QueryUnavailable
    from distillnerf_ros import conversions as cv

    if args.random_weights:
        perception = Perception.from_config(args.model_config, device="cpu", seed=0)
    else:
        checkpoint = shipped_checkpoint(args.model_config)
        if checkpoint is None:
            raise SystemExit(f"bench-node: no shipped checkpoint for model config {args.model_config!r}; "
                             "use --random-weights")
        perception = Perception.from_checkpoint(str(checkpoint), device="cpu")
    first = samples[0]
    images = [cv.decode_compressed(_as_compressed(first[c])) for c in perception.camera_names]
    inputs = ([first[c].intrinsics for c in perception.camera_names], [rig_pose(c) for c in perception.camera_names])
    threshold = float(perception.config.occupancy_threshold)
    if args.random_weights:  # publish a realistic share instead (Occ3D scenes: ~5 %)
        probability = perception.infer(images, *inputs).occupancy_probability
        ranked = np.sort(probability, axis=None)[::-1]
        threshold = max(float(ranked[int(args.occupied_fraction * (ranked.size - 1))]), 1e-6)
    result = perception.infer(images, *inputs, occupancy_threshold=threshold)
    query = None
    if args.query_text:
        try:
            query = perception.query(args.query_text)
        except QueryUnavailable:
            query = None
    origin = "random weights" if args.random_weights else f"shipped checkpoint {checkpoint.name}"
    description = (f"{origin} at threshold {threshold:.3g}: {int(result.occupied.sum())} occupied voxels"
                   + (f", query {args.query_text!r} over {len(query[0])} points" if query else ", no query"))
    return FixedResultBackend(perception, result, query), threshold, description


def reference_decode(samples, frames: int) -> list[float]:
    """ms per set to decode the six JPEGs at full resolution, one after another on this thread (the reference)."""
    import cv2
    import numpy as np

    times = []
    for index in range(frames + 1):
        buffers = [np.frombuffer(frame.jpeg, np.uint8) for frame in samples[index % len(samples)].values()]
        began = time.perf_counter()
        for buffer in buffers:
            cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        if index:  # the first: allocations
            times.append((time.perf_counter() - began) * 1e3)
    return times


def _make_node(backend, context, compressed: bool, threshold: float, query_text: str):
    from rclpy.parameter import Parameter

    from distillnerf_ros.node import DistillNerfNode

    return DistillNerfNode(backend=backend, context=context, parameter_overrides=[
        Parameter("compressed", value=compressed), Parameter("use_tf", value=False),
        Parameter("occupancy_threshold", value=threshold), Parameter("query_text", value=query_text),
        Parameter("publish_rgb", value=True), Parameter("warning_period", value=60.0),
        Parameter("camera_timeout", value=30.0)])


def measure_overhead(node, player_messages, frames: int) -> tuple[dict[str, list], dict[str, list]]:
    """Drive the node's callbacks and worker step directly (no executor): per-stage times of ``frames`` sets, and
    the node's per-output times (``stage_ms["output/..."]``, those it records)."""
    node.worker.stop()  # the loop below takes each set and processes it itself
    times = {"callbacks (checks + sync)": [], "conversion": [], "publishing": [], "total": []}
    outputs: dict[str, list] = {}
    for index in range(frames + 2):
        messages = player_messages(index)
        counts = {key: len(node.stage_ms.get(f"output/{key}", ())) for key in OUTPUT_KEYS}
        began = time.perf_counter()
        for camera, msg in messages:
            node.on_image(camera, msg)
        synced = time.perf_counter()
        frames_set = node.worker.take(timeout=1.0)
        if frames_set is None:
            raise RuntimeError("the benchmark set did not synchronise")
        node.process(frames_set)
        if index < 2:  # first sets: allocations, discovery of the sinks
            continue
        stage = {name: node.stage_ms[name][-1] for name in ("conversion", "publishing", "inference")}
        times["callbacks (checks + sync)"].append((synced - began) * 1e3)
        times["conversion"].append(stage["conversion"])
        times["publishing"].append(stage["publishing"])
        times["total"].append((synced - began) * 1e3 + sum(stage.values()))
        for key, count in counts.items():
            recorded = node.stage_ms.get(f"output/{key}", ())
            if len(recorded) > count:
                outputs.setdefault(key, []).append(recorded[-1])
    return times, outputs


def overhead_run(context, backend, samples, args, threshold: float, compressed: bool, skip=()):
    """One node, one sink subscribed to every output but ``skip``: (stage times, per-output times)."""
    import rclpy

    from distillnerf.rig import NUSCENES_CAMERAS
    from distillnerf_ros.harness import FramePlayer

    node = _make_node(backend, context, compressed, threshold, args.query_text)
    listener = sink(context, "bench_sink", NUSCENES_CAMERAS, skip=skip)
    player_node = rclpy.create_node("bench_player", context=context)
    player = FramePlayer(player_node, cameras=NUSCENES_CAMERAS, compressed=compressed)
    raw_cache = {}

    def messages(index):
        sample = samples[index % len(samples)]
        base = time.time_ns() + index * 10**8
        out = []
        for camera, frame in sample.items():
            if compressed:
                msg = player.image_message(camera, base + frame.offset_ns, frame)
            else:  # decoding to rgb8 is the camera's work, not the node's: once per frame
                key = (index % len(samples), camera)
                if key not in raw_cache:
                    raw_cache[key] = player.image_message(camera, 0, frame)
                msg = raw_cache[key]
                set_stamp(msg.header.stamp, base + frame.offset_ns)
            out.append((camera, msg))
        return out

    try:
        wait_for_subscriptions(node, listener)
        measured = measure_overhead(node, messages, args.frames)
        delivered = drain(context, listener)
        if delivered < len(listener.topics):
            raise RuntimeError(f"bench-node: only {delivered} of the sink's {len(listener.topics)} topics received")
        return measured
    finally:
        node.close()
        listener.destroy_node()
        player_node.destroy_node()


def _print_block(title: str, times: dict[str, list]) -> None:
    print(f"\n{title}:")
    for stage, values in times.items():
        print(f"  {stage:28s} {summary(values)}")


def _print_outputs(outputs: dict[str, list], backend, grid) -> None:
    if outputs:
        print("  (d) per output (build + publish, ms per set, the node's stage_ms):")
    else:  # a node that records no per-output times: time each builder on the result (build only)
        print("  (d) per output (this node records none: each builder timed directly on the result, build only, "
              "no publish, ms per set):")
        outputs = builder_timings(backend, grid)
    for key in OUTPUT_KEYS:
        if key in outputs:
            print(f"    {key:26s} {summary(outputs[key])}")


def _ratio_line(label: str, overhead: list, reference: list, goal: float) -> str:
    ratio = statistics.median(overhead) / statistics.median(reference)
    return f"  {label:52s} {ratio:5.2f}  (goal <= {goal}: {'met' if ratio <= goal else 'not met'})"


def run(args) -> int:
    import rclpy
    import torch

    from distillnerf.rig import NUSCENES_CAMERAS

    torch.set_num_threads(1)
    samples = samples_of(args, "bench-node")
    if samples is None:
        return 2
    backend, threshold, description = load_result(args, samples)
    first = samples[0][NUSCENES_CAMERAS[0]]
    print(f"distillnerf bench-node: six {first.width}x{first.height} nuScenes images per set; outputs of model "
          f"'{args.model_config}' (render {backend.render_size[0]}x{backend.render_size[1]}, {description}); "
          f"model time excluded; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        # reference passes before, between and after the two JPEG runs: each run is set against the passes on
        # either side of it, so both see the same load on a shared machine
        passes = [reference_decode(samples, args.frames)]
        every, outputs = overhead_run(context, backend, samples, args, threshold, compressed=True)
        passes.append(reference_decode(samples, args.frames))
        without, _ = overhead_run(context, backend, samples, args, threshold, compressed=True, skip=VOLUME_OUTPUTS)
        passes.append(reference_decode(samples, args.frames))
        raw, _ = overhead_run(context, backend, samples, args, threshold, compressed=False)
        reference_b, reference_c = passes[0] + passes[1], passes[1] + passes[2]
        _print_block(f"(a) reference: the six JPEGs decoded at full resolution one after another on one thread "
                     f"(cv2.imdecode), {len(passes)} passes of {args.frames} sets around the JPEG runs",
                     {"full-resolution decode": [v for p in passes for v in p]})
        _print_block(f"(b) CompressedImage (JPEG) input, every output subscribed, {args.frames} sets", every)
        _print_outputs(outputs, backend, backend.voxel_grid)
        _print_block(f"(c) CompressedImage (JPEG) input, nobody subscribed to {' and '.join(VOLUME_OUTPUTS)}, "
                     f"{args.frames} sets", without)
        _print_block(f"Image rgb8 input, every output subscribed, {args.frames} sets", raw)
        print("\nNode overhead per set / reference (medians; each run against the reference passes either side):")
        print(_ratio_line("(b) JPEG, every output subscribed", every["total"], reference_b, GOAL_ALL_OUTPUTS))
        print(_ratio_line("(c) JPEG, voxel cloud + semantic grid unsubscribed", without["total"], reference_c,
                          GOAL_WITHOUT_VOLUMES))
        for label, run_times, reference in (("(b)", every, reference_b), ("(c)", without, reference_c)):
            rest = [t - c for t, c in zip(run_times["total"], run_times["conversion"])]
            print(f"  {label} without conversion (decode + resize): callbacks + publishing "
                  f"{statistics.median(rest) / statistics.median(reference):.2f} of the reference; conversion "
                  f"{statistics.median(run_times['conversion']) / statistics.median(reference):.2f}")
        if not args.skip_rate:
            from distillnerf_ros.bench_parts import measure_rates

            measure_rates(args, backend, context, samples, threshold)
    finally:
        context.try_shutdown()
    return 0


def _as_compressed(frame):
    from types import SimpleNamespace

    return SimpleNamespace(data=frame.jpeg, format="jpeg")
