"""distillnerf_ros: the ROS 2 node layer over the ``distillnerf`` model library (never the training package)."""
