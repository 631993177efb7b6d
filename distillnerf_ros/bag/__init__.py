"""ROS 2 bags: nuScenes (real or synthetic) to bag with ``rosbags``, and replay over rclpy without rosbag2."""
