"""Six-camera synchronisation: the in-project synchroniser, and message_filters' where it is installed, pass the
same tests; plus the stamp monitor (duplicates, looped bags) and the queue of one."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from distillnerf_ros.synchronizer import (ApproximateSynchronizer, LatestSlot, MessageFiltersSynchronizer,
                                          StampMonitor, message_filters_available)

CAMERAS = ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT"]
#: nuScenes-like offsets of the six cameras within one 12 Hz cycle (they span ~42 ms).
OFFSETS = [0.0, 0.008, 0.017, 0.025, 0.033, 0.042]


def message(seconds: float, tag=None):
    """A stand-in camera message with a real ``std_msgs/Header``: message_filters converts the stamp with
    ``rclpy.time.Time.from_msg``, which accepts only a real ``builtin_interfaces/Time``."""
    nanoseconds = int(round(seconds * 1e9))
    stamp = Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)
    return SimpleNamespace(header=Header(stamp=stamp, frame_id="camera"), tag=tag)


def in_project(cameras, slop, queue, callback):
    return ApproximateSynchronizer(cameras, slop, queue, callback)


def real_message_filters(cameras, slop, queue, callback):
    if not message_filters_available():
        pytest.skip("message_filters is not installed (ROS 2 install only); the in-project synchroniser is used")
    return MessageFiltersSynchronizer(cameras, slop, queue, callback)


@pytest.fixture(params=[in_project, real_message_filters], ids=["in_project", "message_filters"])
def make(request):
    return request.param


def feed_cycles(sync, cycles, period=1 / 12, start=100.0, order=None, skip=()):
    for cycle in range(cycles):
        base = start + cycle * period
        for index in order or range(len(CAMERAS)):
            if (cycle, CAMERAS[index]) in skip:
                continue
            sync.add(CAMERAS[index], message(base + OFFSETS[index], tag=(cycle, CAMERAS[index])))


def test_every_complete_cycle_makes_one_set_of_its_own_messages(make):
    sets = []
    sync = make(CAMERAS, 0.06, 5, sets.append)
    feed_cycles(sync, 10)
    assert len(sets) == 10
    for cycle, found in enumerate(sets):
        assert set(found) == set(CAMERAS)
        assert {msg.tag for msg in found.values()} == {(cycle, camera) for camera in CAMERAS}


def test_arrival_order_does_not_matter(make):
    sets = []
    sync = make(CAMERAS, 0.06, 5, sets.append)
    feed_cycles(sync, 6, order=[5, 2, 0, 4, 1, 3])
    assert len(sets) == 6
    assert all(len({msg.tag[0] for msg in found.values()}) == 1 for found in sets)


def test_no_set_when_stamps_spread_beyond_the_slop(make):
    sets = []
    sync = make(CAMERAS[:2], 0.06, 5, sets.append)
    sync.add(CAMERAS[0], message(10.0))
    sync.add(CAMERAS[1], message(10.2))
    assert sets == []


def test_a_missing_camera_blocks_the_set_until_it_is_made_inactive(make):
    sets = []
    sync = make(CAMERAS, 0.06, 5, sets.append)
    feed_cycles(sync, 3, skip={(c, "CAM_BACK") for c in range(3)})
    assert sets == []
    sync.set_active([c for c in CAMERAS if c != "CAM_BACK"])
    feed_cycles(sync, 2, start=200.0, skip={(c, "CAM_BACK") for c in range(2)})
    assert len(sets) >= 2
    assert all(set(found) == set(CAMERAS) - {"CAM_BACK"} for found in sets)


def test_reset_forgets_buffered_messages(make):
    sets = []
    sync = make(CAMERAS[:2], 0.06, 5, sets.append)
    sync.add(CAMERAS[0], message(50.0))
    sync.reset()
    sync.add(CAMERAS[1], message(50.01))
    assert sets == []
    sync.add(CAMERAS[0], message(50.02))
    assert len(sets) == 1


def test_in_project_picks_the_tight_window_not_the_nearest_message():
    sets = []
    sync = ApproximateSynchronizer(["a", "b", "c"], 0.06, 5, sets.append)
    sync.add("b", message(9.96, "b_early"))
    sync.add("b", message(10.05, "b_late"))
    sync.add("c", message(10.055, "c"))
    sync.add("a", message(10.0, "a"))
    assert len(sets) == 1 and sets[0]["b"].tag == "b_late"


def test_in_project_drops_stale_messages_after_a_set():
    sets = []
    sync = ApproximateSynchronizer(["a", "b"], 0.06, 5, sets.append)
    sync.add("a", message(10.0))
    sync.add("b", message(10.01))
    sync.add("a", message(9.9))  # older than the one already used
    assert len(sets) == 1 and sync.stale == 1


def test_stamp_monitor_flags_duplicates_and_loops_once():
    monitor = StampMonitor()
    assert monitor.check("a", 100) == "ok" and monitor.check("b", 101) == "ok"
    assert monitor.check("a", 100) == "duplicate"
    assert monitor.check("a", 200) == "ok"
    assert monitor.check("a", 5) == "backwards"  # the bag looped
    assert monitor.check("b", 6) == "ok"  # the other cameras' first looped stamps are not flagged again
    assert monitor.check("a", 10) == "ok"


def test_latest_slot_keeps_the_newest_and_counts_the_dropped():
    slot = LatestSlot()
    for item in range(5):
        slot.put(item)
    assert slot.get(timeout=0.1) == 4 and slot.dropped == 4
    assert slot.get(timeout=0.01) is None
    got = []
    worker = threading.Thread(target=lambda: got.append(slot.get(timeout=5.0)))
    worker.start()
    slot.put("late")
    worker.join(5.0)
    assert got == ["late"]
    slot.close()
    assert slot.get(timeout=5.0) is None
