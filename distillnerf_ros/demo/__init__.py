"""The one-command demo: synthetic drive -> bag -> node over ROS -> report (docs/demo.md)."""
