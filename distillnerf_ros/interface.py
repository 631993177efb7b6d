"""The node's names as other programs see them: node name, ready line, topics and their QoS.

Launch files remap the private ``~/input`` and ``~/output`` topics (Autoware's convention); tests, the demo and
the benchmarks build the same names from here.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

NODE_NAME = "distillnerf"
#: The log line that says the model is loaded and warmed up; process helpers wait for it.
READY_PREFIX = "distillnerf ready:"


def input_topics(camera: str) -> dict[str, str]:
    """The node's private input topics of one camera (the launch file remaps these)."""
    return {"image": f"~/input/{camera}/image", "compressed": f"~/input/{camera}/image/compressed",
            "camera_info": f"~/input/{camera}/camera_info"}


QUERY_TOPIC = "~/input/query"
OUTPUT_TOPICS = {
    "occupancy_grid": "~/output/occupancy_grid",  # nav_msgs/OccupancyGrid (bird's-eye view)
    "occupancy": "~/output/occupancy",  # sensor_msgs/PointCloud2 of occupied voxels
    "semantic_occupancy": "~/output/semantic_occupancy",  # distillnerf_msgs/SemanticOccupancy
    "feature_query": "~/output/feature_query",  # sensor_msgs/PointCloud2, intensity = relevance
}


def camera_output_topics(camera: str) -> dict[str, str]:
    return {"depth": f"~/output/{camera}/depth", "camera_info": f"~/output/{camera}/camera_info",
            "rgb": f"~/output/{camera}/rgb"}


DEBUG_TOPICS = {"processing_time_ms": "~/debug/processing_time_ms", "pipeline_latency_ms": "~/debug/pipeline_latency_ms"}


def input_qos(reliable: bool, depth: int) -> QoSProfile:
    reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
