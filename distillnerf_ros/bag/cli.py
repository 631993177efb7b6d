"""``distillnerf nuscenes2bag`` and ``distillnerf replay``: argument parsing only (heavy imports inside ``run``)."""

from __future__ import annotations

import argparse
import signal
import sys
from contextlib import contextmanager

from .replay import DEFAULT_MAX_GAP_S  # stdlib-only at import: the parser stays light

NUSCENES2BAG_HELP = "convert nuScenes scenes (real or synthetic) into a ROS 2 bag (MCAP/sqlite3)"
REPLAY_HELP = "publish a ROS 2 bag over rclpy with its recorded timing and /clock (no rosbag2 needed)"


def add_nuscenes2bag_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=NUSCENES2BAG_HELP,
        description=NUSCENES2BAG_HELP + ". Topics: /<CAM>/image/compressed (original JPEG), /<CAM>/camera_info, "
        "/LIDAR_TOP/points, /tf (map->base_link, base_link->sensor at every sample_data), /tf_static (transient "
        "local). The rig file for nodes without TF is written to <out>/calibration.yaml. See docs/bags.md.")
    p.add_argument("--dataroot", required=True, help="nuScenes dataroot (holds samples/, sweeps/, <version>/)")
    p.add_argument("--version", required=True, help="table folder, e.g. v1.0-mini, v1.0-tiny, v1.0-synth")
    p.add_argument("--scene", action="append", default=None, metavar="NAME",
                   help="scene name to convert (repeat for several; default: every scene)")
    p.add_argument("--out", required=True, help="bag folder to create (written as <out>.partial, then renamed)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                   help="rosbag2 storage: mcap (zstd chunks, default) or sqlite3")
    p.add_argument("--no-sweeps", dest="sweeps", action="store_false",
                   help="keyframes only (default: keyframes and the sweeps between them)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_nuscenes2bag)
    return p


def run_nuscenes2bag(args) -> int:
    from .nuscenes_source import DatasetError
    from .writer import write_nuscenes_bag

    try:
        summary = write_nuscenes_bag(args.dataroot, args.version, args.out, scenes=args.scene,
                                     storage=args.storage, sweeps=args.sweeps, overwrite=args.overwrite,
                                     progress=not args.quiet)
    except (DatasetError, FileExistsError, ValueError) as error:
        print(f"distillnerf nuscenes2bag: error: {error}", file=sys.stderr)
        return 1
    print(summary.describe())
    return 0


def add_replay_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=REPLAY_HELP,
        description=REPLAY_HELP + ". Publishers are RELIABLE (latched topics such as /tf_static TRANSIENT_LOCAL); "
        "messages go out as the recorded bytes with their recorded inter-message timing divided by --rate. "
        "Gaps of more than --max-gap recorded seconds with no message are skipped (/clock jumps). Topics whose "
        "message package is not importable (e.g. tf2_msgs) are skipped with a warning. SIGINT/SIGTERM stop it "
        "cleanly (exit 0).")
    p.add_argument("bag", help="ROS 2 bag folder (with metadata.yaml)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    p.add_argument("--loop", action="store_true", help="start again at the end until interrupted")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="skip the first S seconds of the bag")
    p.add_argument("--no-clock", dest="clock", action="store_false", help="do not publish /clock")
    p.add_argument("--max-gap", type=float, default=DEFAULT_MAX_GAP_S, metavar="S",
                   help="skip silences longer than S recorded seconds, e.g. between scenes days apart: the next "
                   "message goes out at once and /clock jumps forward (default %(default)s; 0 or negative: never skip)")
    p.add_argument("--clock-hz", type=float, default=40.0, help="/clock rate between messages (default 40)")
    p.add_argument("--qos-depth", type=int, default=10, help="history depth of the volatile publishers")
    p.add_argument("--wait-for", action="append", default=[], metavar="TOPIC",
                   help="wait until TOPIC has a subscriber before playing (repeat for several)")
    p.add_argument("--wait-timeout", type=float, default=30.0, help="seconds to wait for --wait-for (default 30)")
    p.set_defaults(func=run_replay)
    return p


@contextmanager
def _stop_on_signals(stop):
    """SIGINT and SIGTERM set ``stop`` (and nothing else) while the replay runs; the old handlers come back after.
    Off the main thread (e.g. ``main()`` called from a worker) Python cannot install handlers: none are."""
    def handler(signum, _frame):
        stop.set(signal.Signals(signum).name)

    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def run_replay(args) -> int:
    from .replay import StopRequest

    if args.rate <= 0 or args.start < 0:
        print(f"distillnerf replay: error: --rate must be positive and --start not negative, got {args.rate} and "
              f"{args.start}", file=sys.stderr)
        return 2
    with _stop_on_signals(StopRequest()) as stop:
        return _replay(args, stop)


def _replay(args, stop) -> int:
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from .replay import BagError, BagReplayer

    # rclpy's own handlers would shut the context down under a publishing loop (RCLError "publisher's context is
    # invalid"); ours only ask the loop to stop, and the node and context are closed here in order.
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("distillnerf_replay")
    published = 0
    try:
        replayer = BagReplayer(node, args.bag, qos_depth=args.qos_depth, clock=args.clock)
        if args.wait_for and not stop.is_set():
            replayer.wait_for_subscribers(args.wait_for, args.wait_timeout, stop=stop)
        node.get_logger().info(f"replaying {args.bag}: {len(replayer.topics)} topics at rate {args.rate}"
                               f"{' (loop)' if args.loop else ''}")
        stats = replayer.play(rate=args.rate, start_s=args.start, loop=args.loop, clock_hz=args.clock_hz,
                              stop=stop, max_gap=args.max_gap)
        published = sum(stats.published.values())
        if not stop.is_set():
            replayer.wait_for_acknowledgements()
        gaps = (f", {stats.gaps_skipped} gap(s) of {stats.gap_seconds_skipped:.1f} s skipped"
                if stats.gaps_skipped else "")
        if stop.is_set():
            print(f"replay stopped by {stop.reason} after {published} messages{gaps}")
        else:
            print(f"replayed {published} messages on {len(stats.published)} topics in {stats.passes} pass(es), "
                  f"{stats.wall_seconds:.2f} s{gaps}")
        # Exit 0 on SIGINT/SIGTERM too, as `ros2 bag play` does: stopping a player is the normal way to end it
        # (--loop has no other), and launch files / supervisors read non-zero as a failure.
        return 0
    except (BagError, TimeoutError) as error:
        print(f"distillnerf replay: error: {error}", file=sys.stderr)
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
