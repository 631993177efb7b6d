"""The ROS 2 ament_python package ``distillnerf_ros``: the node layer over the ``distillnerf`` model library."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "distillnerf_ros"

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
    # Every configuration subfolder (rigs, model, train, synth, foundation): the libraries find them here too.
    + [(f"share/{PACKAGE}/{folder}", glob(f"{folder}/*.yaml")) for folder in sorted(f.rstrip("/") for f in glob("config/*/"))],
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
        "distillnerf.commands": [
            "nuscenes2bag = distillnerf_ros.bag.cli:add_nuscenes2bag_parser",
            "replay = distillnerf_ros.bag.cli:add_replay_parser",
            "bench-node = distillnerf_ros.bench:add_parser",
            "demo = distillnerf_ros.demo.cli:add_parser",
        ],
    },
)
