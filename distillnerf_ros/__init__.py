"""distillnerf_ros: the ROS 2 node layer over the ``distillnerf`` model library (never the training package)."""

import distillnerf  # noqa: E402,F401  (the model library sets the CPU allocator policy before torch loads)
