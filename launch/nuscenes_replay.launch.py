"""Replay a nuScenes bag (from `distillnerf nuscenes2bag`) into the node on simulated time, with RViz.

    ros2 launch distillnerf_ros nuscenes_replay.launch.py bag:=/data/bags/scene-0061
    ros2 launch distillnerf_ros nuscenes_replay.launch.py bag:=/data/bags/scene-0061 rate:=0.5 loop:=true rviz:=false

`ros2 bag play --clock` publishes /clock, and the node runs with use_sim_time:=true, so stamps, TF lookups
and ~/debug/pipeline_latency_ms are in bag time. The node reads extrinsics from the bag's /tf, and falls back
to the rig file the converter writes inside the bag folder (calibration.yaml).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("distillnerf_ros")
    bag = LaunchConfiguration("bag")
    arguments = [
        DeclareLaunchArgument("bag", description="Bag folder written by `distillnerf nuscenes2bag`"),
        DeclareLaunchArgument("rate", default_value="1.0", description="Playback rate"),
        DeclareLaunchArgument("loop", default_value="false", description="Loop the bag (the node resets its "
                                                                         "synchroniser when stamps jump back)"),
        DeclareLaunchArgument("param_file", default_value=PathJoinSubstitution([share, "config",
                                                                               "distillnerf.param.yaml"]),
                              description="Node parameter file"),
        DeclareLaunchArgument("calibration_file", default_value=PathJoinSubstitution([bag, "calibration.yaml"]),
                              description="Rig file (default: the one inside the bag folder)"),
        DeclareLaunchArgument("rviz", default_value="true", description="Open RViz"),
    ]
    rate = LaunchConfiguration("rate")
    player = ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock", "--rate", rate], output="screen",
                            condition=UnlessCondition(LaunchConfiguration("loop")))
    looping_player = ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock", "--rate", rate, "--loop"],
                                    output="screen", condition=IfCondition(LaunchConfiguration("loop")))
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "distillnerf.launch.py"])),
        launch_arguments={
            "param_file": LaunchConfiguration("param_file"),
            "calibration_file": LaunchConfiguration("calibration_file"),
            "use_sim_time": "true",
            "rviz": LaunchConfiguration("rviz"),
        }.items(),
    )
    return LaunchDescription([*arguments, node, player, looping_player])
