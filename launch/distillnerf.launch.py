"""Start the distillnerf node (and RViz): camera topics remapped onto the node's private ~/input names.

    ros2 launch distillnerf_ros distillnerf.launch.py                      # /<CAM>/image/compressed in
    ros2 launch distillnerf_ros distillnerf.launch.py rviz:=false use_sim_time:=true \
        param_file:=/path/my.param.yaml calibration_file:=/path/bag/calibration.yaml

Inputs are remapped per camera: ~/input/<CAM>/image/compressed -> /<CAM>/image/compressed,
~/input/<CAM>/image -> /<CAM>/image, ~/input/<CAM>/camera_info -> /<CAM>/camera_info (the topics of
`distillnerf nuscenes2bag` bags and of most camera drivers; change `camera_topic_prefix` for a namespace).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

# The six nuScenes cameras, as camera_names in config/distillnerf.param.yaml (a test keeps them equal).
CAMERAS = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT")


def camera_remappings(prefix):
    """(private input name, real topic) pairs; ``prefix`` is a substitution or string put before /<CAM>/..."""
    remappings = []
    for camera in CAMERAS:
        remappings += [
            (f"~/input/{camera}/image/compressed", [prefix, f"/{camera}/image/compressed"]),
            (f"~/input/{camera}/image", [prefix, f"/{camera}/image"]),
            (f"~/input/{camera}/camera_info", [prefix, f"/{camera}/camera_info"]),
        ]
    return remappings


def generate_launch_description():
    share = FindPackageShare("distillnerf_ros")
    arguments = [
        DeclareLaunchArgument("param_file", default_value=PathJoinSubstitution([share, "config",
                                                                               "distillnerf.param.yaml"]),
                              description="Node parameter file (/**: ros__parameters:)"),
        DeclareLaunchArgument("calibration_file", default_value="nuscenes",
                              description="Rig file or name in distillnerf/configs/rigs/ "
                                          "(extrinsics where TF has none)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (true when replaying a bag with --clock)"),
        DeclareLaunchArgument("rviz", default_value="true", description="Open RViz with config/distillnerf.rviz"),
        DeclareLaunchArgument("rviz_config", default_value=PathJoinSubstitution([share, "config",
                                                                                "distillnerf.rviz"]),
                              description="RViz configuration"),
        DeclareLaunchArgument("camera_topic_prefix", default_value="",
                              description="Namespace before /<CAM>/... of the camera topics (e.g. /sensing)"),
    ]
    use_sim_time = LaunchConfiguration("use_sim_time")
    node = Node(
        package="distillnerf_ros",
        executable="distillnerf_node",
        name="distillnerf",
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("param_file"),
                    {"calibration_file": LaunchConfiguration("calibration_file"), "use_sim_time": use_sim_time}],
        remappings=camera_remappings(LaunchConfiguration("camera_topic_prefix")),
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", LaunchConfiguration("rviz_config")],
        parameters=[{"use_sim_time": use_sim_time}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*arguments, node, rviz])
