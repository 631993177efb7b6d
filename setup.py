"""The ROS 2 ament_python package ``distillnerf_ros``: the node layer over the ``distillnerf`` model library."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "distillnerf_ros"
# The libraries keep their configs inside their packages (found there through importlib.resources).
CONFIG_SUBFOLDERS = sorted(f.rstrip("/") for f in glob("model/distillnerf/configs/*/")
                           + glob("training/distillnerf_train/configs/*/"))

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ]
    # Every model and training config subfolder (model, rigs, foundation, train, synth, eval) beside the ROS
    # package's own, as share/distillnerf_ros/config/<folder>: ROS users find them in one place, and so does
    # distillnerf.config_files.
    + [(f"share/{PACKAGE}/config/{Path(folder).name}", glob(f"{folder}/*.yaml")) for folder in CONFIG_SUBFOLDERS],
    # rclpy, message packages, cv_bridge, message_filters come from the ROS install (package.xml), not pip.
    install_requires=["setuptools", "distillnerf", "numpy", "pyyaml", "rosbags"],
    zip_safe=True,
    maintainer="distillnerf_ros team",
    maintainer_email="distillnerf-ros@example.com",
    description="ROS 2 node: six surround cameras in; occupancy, depth and feature queries out (DistillNeRF).",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": ["distillnerf_node = distillnerf_ros.node:main"],
        "distillnerf.configs": ["distillnerf_ros = distillnerf_ros.config_root:config_root"],
        "distillnerf.commands": [
            "nuscenes2bag = distillnerf_ros.bag.cli:add_nuscenes2bag_parser",
            "replay = distillnerf_ros.bag.cli:add_replay_parser",
            "bench-node = distillnerf_ros.bench:add_parser",
            "soak-node = distillnerf_ros.soak:add_parser",
            "demo = distillnerf_ros.demo.cli:add_parser",
        ],
    },
)
